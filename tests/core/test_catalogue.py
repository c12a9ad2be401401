"""The step catalogue: the one list of steps, what each declares, and the mistakes it refuses when built."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.catalogue import Catalogue, CatalogueError, StepName, WaitPolicyName, WaitSpec
from core.permissions import StepPermissions
from core.requests import StepModes
from core.settings import WaitSettings
from tasks import console_access, security_device, tenant, unified_audit_log
from tasks.catalogue import CATALOGUE
from tasks.step import converged


def test_the_checklist_follows_the_guide_and_names_every_step_and_milestone_once() -> None:
    assert [line.name for line in CATALOGUE.lines()] == list(StepName)
    assert [line.numbered(line.label) for line in CATALOGUE.lines()] == [
        "Tenant confirmed", "3. Admin consent", "1. SOC guest, Global Reader", "1. Cross-tenant trust", "2. Audit log enabled",
        "2. Auditing in effect", "4. Device registered", "4. Device healthy", "4. Data flowing", "4. First alerts"]


def test_what_the_flow_reads_from_it() -> None:
    assert [w.name for w in CATALOGUE.milestones()] == [StepName.AUDIT_ACTIVATION, StepName.DEVICE_HEALTHY, StepName.FIRST_DATA, StepName.FIRST_ALERTS]
    assert [w.name for w in CATALOGUE.customer_waits()] == [StepName.ADMIN_CONSENT, StepName.CONSOLE_ACCESS, StepName.CROSS_TENANT_ACCESS,
                                                           StepName.UNIFIED_AUDIT_LOG]
    assert [s.name.value for s in CATALOGUE.with_modes()] == list(StepModes.model_fields)  # the request's mode fields
    assert CATALOGUE.step_of(StepName.FIRST_DATA) is security_device.SPEC
    assert CATALOGUE.check_of(StepName.AUDIT_ACTIVATION) is unified_audit_log.SPEC.step
    assert {w.on_stall.action for w in CATALOGUE.waits() if w.on_stall} == {"recheck_admin_consent", "restart_management_subscriptions"}


def test_every_wait_has_a_policy_in_the_settings() -> None:
    waits = WaitSettings()
    for wait in CATALOGUE.waits():
        assert waits.base(wait.policy).stall_s <= waits.base(wait.policy).limit_s
    assert {p.value for p in WaitPolicyName} == {name for name, field in WaitSettings.model_fields.items() if name not in ("time_scale", "suspend_from_s")}


def test_the_permissions_the_app_requests_are_every_steps_in_one_list() -> None:
    assert CATALOGUE.requested_permissions() == [
        "Exchange.ManageAsApp", "Organization.Read.All", "Policy.ReadWrite.CrossTenantAccess", "RoleManagement.ReadWrite.Directory",
        "User.Invite.All", "User.Read.All", "ActivityFeed.Read"]
    assert StepName.SECURITY_DEVICE not in CATALOGUE.permission_table()  # the Workbench key, not an Entra permission


def _milestone(name: StepName, **changes: object) -> WaitSpec:
    wait = WaitSpec(name=name, policy=WaitPolicyName.FIRST_DATA, done=converged, stall_next_action="look", label="Label", title="Title")
    return replace(wait, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(("steps", "refusal"), [
    ([tenant.SPEC, tenant.SPEC], "declared twice"),
    ([replace(console_access.SPEC, waits=(*console_access.SPEC.waits, _milestone(StepName.FIRST_DATA, label=None)))], "needs a label and a title"),
    ([replace(console_access.SPEC, permissions=None)], "needs a step and its permissions"),
    ([replace(tenant.SPEC, waits=(_milestone(StepName.FIRST_DATA),))], "needs a step to check with"),
    ([replace(console_access.SPEC, waits=(*console_access.SPEC.waits, *console_access.SPEC.waits))], "same checklist line"),
    ([replace(console_access.SPEC, waits=(_milestone(StepName.FIRST_DATA),)),
      replace(security_device.SPEC, waits=(_milestone(StepName.FIRST_DATA),))], "declared twice"),
])
def test_a_catalogue_that_contradicts_itself_is_refused_when_built(steps: list, refusal: str) -> None:
    with pytest.raises(CatalogueError, match=refusal):
        Catalogue(steps)


def test_a_step_that_declares_no_permission_per_mode_is_not_in_the_permission_table() -> None:
    catalogue = Catalogue([tenant.SPEC, replace(console_access.SPEC, mode_chosen=False, permissions=None)])
    assert catalogue.permission_table() == {StepName.TENANT: StepPermissions(read=("Organization.Read.All",), apply=("Organization.Read.All",))}
