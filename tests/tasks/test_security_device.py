"""Guide step 4 against the sandbox: register once, never twice, then follow health, data and alerts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from clients.errors import ApiTimeout, DeviceRejected, PluginNotFound, ServerError, WorkbenchRoleRequired
from core.results import Action, Mode, Outcome, StepResult
from tasks.context import TenantContext
from tasks.errors import OrganizationNotVisible, WorkbenchNotConfigured
from tasks.security_device import SecurityDeviceStep, Stage
from tasks.step import run_step
from tests.conftest import CONFIGURED, FRESH, NEVER_CONSENTS, OTHER_WORKBENCH_ORG, QUIET, UNHEALTHY, WORKBENCH_ORG
from tests.sandbox_harness import SandboxHandle
from tests.support import present

M365 = "o365"  # the sandbox's slug; the step must discover it, so it is only asserted here
NAMES = {FRESH: "Fresh Corp", CONFIGURED: "Configured Inc", NEVER_CONSENTS: "Never Consents LLC", UNHEALTHY: "Unhealthy Device Co", QUIET: "Quiet Tenant Pty"}
Factory = Callable[..., TenantContext]


def _ctx(make_context: Factory, tenant: str, **kwargs: Any) -> TenantContext:
    return make_context(tenant, NAMES.get(tenant, "Some Org"), **kwargs)


def _run(make_context: Factory, tenant: str, mode: Mode = Mode.APPLY, **kwargs: Any) -> StepResult:
    return run_step(SecurityDeviceStep(), _ctx(make_context, tenant, **kwargs), mode)


def _devices(sandbox: SandboxHandle, tenant: str) -> list[dict[str, Any]]:
    """Live devices of a tenant, straight from the sandbox's state."""
    devices = sandbox.admin("GET", "workbench").json()["security_devices"]
    return [d for d in devices if d["tenant_id"] == tenant and d["deleted_at"] is None]


def _writes(sandbox: SandboxHandle) -> list[tuple[str, int]]:
    return [(r["method"], r["status"]) for r in sandbox.request_log(service="workbench") if r["method"] != "GET"]


# --- create, once ------------------------------------------------------------------------------------
def test_fresh_tenant_gets_one_m365_device_with_its_tenant(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    result = _run(make_context, FRESH)
    assert result.plan.action == Action.CREATE
    assert (result.outcome, result.waiting_for) == (Outcome.WAITING, "the first health check")
    (device,) = _devices(step_sandbox, FRESH)
    assert device["plugin_slug"] == M365 and device["name"] == "Microsoft 365 - Fresh Corp"
    assert device["organization_id"] == WORKBENCH_ORG
    attributes = _ctx(make_context, FRESH).workbench.get_security_device(device["id"])
    assert attributes.device_spec == {"tenant_id": FRESH, "tenant_name": "Fresh Corp"}
    assert result.observed["device_id"] == device["id"] and result.observed["stage"] == Stage.VERIFYING
    assert _writes(step_sandbox) == [("POST", 201)]


def test_second_run_writes_nothing(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    first = _run(make_context, FRESH)
    again = _run(make_context, FRESH)
    assert again.plan.is_noop and again.observed["device_id"] == first.observed["device_id"]
    assert _writes(step_sandbox) == [("POST", 201)]


def test_plan_writes_nothing_and_lists_every_field(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    result = _run(make_context, FRESH, Mode.PLAN)
    assert result.outcome == Outcome.PLANNED and _writes(step_sandbox) == [] and _devices(step_sandbox, FRESH) == []
    assert {c.field for c in result.plan.changes} == {"name", "plugin_slug", "device_spec.tenant_id", "device_spec.tenant_name"}
    assert {c.by for c in result.plan.changes} == {"provider"}


def test_guide_mode_still_registers_the_providers_device(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    result = _run(make_context, FRESH, Mode.GUIDE)  # guide mode hands over the customer's side only
    assert (result.outcome, result.instructions) == (Outcome.WAITING, None)
    assert len(_devices(step_sandbox, FRESH)) == 1 and _writes(step_sandbox) == [("POST", 201)]


def test_instructions_follow_the_guide_in_workbench(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    ctx, step = _ctx(make_context, FRESH), SecurityDeviceStep()
    desired = step.desired(ctx)
    text = step.instructions(ctx, desired, step.plan(ctx, desired, step.observe(ctx)))
    for part in ("Organization Settings > Security Devices", "Add Security Device", "Microsoft 365", FRESH, "'Fresh Corp'", "Test Customers"):
        assert part in text
    assert _writes(step_sandbox) == []


def test_a_post_whose_answer_is_lost_is_adopted_not_repeated(
    step_sandbox: SandboxHandle, make_context: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _ctx(make_context, FRESH)
    post = ctx.workbench.create_security_device

    def post_then_lose_the_answer(*args: Any, **kwargs: Any) -> None:
        post(*args, **kwargs)  # Workbench registers the device...
        raise ApiTimeout("workbench create_security_device: no answer within 30s")  # ...but its answer never arrives

    monkeypatch.setattr(ctx.workbench, "create_security_device", post_then_lose_the_answer)
    result = run_step(SecurityDeviceStep(), ctx, Mode.APPLY)
    (device,) = _devices(step_sandbox, FRESH)
    assert result.observed["device_id"] == device["id"] and result.outcome == Outcome.WAITING
    assert _run(make_context, FRESH).plan.is_noop and len(_devices(step_sandbox, FRESH)) == 1
    assert _writes(step_sandbox) == [("POST", 201)]


def test_a_post_that_times_out_is_looked_up_not_repeated_and_the_rerun_makes_one(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    # The sandbox drops a request whose client has gone, so this POST is never applied.
    step_sandbox.add_fault(service="workbench", kind="slow", method="POST", delay="1s", count=1)
    ctx = _ctx(make_context, FRESH, timing={"http_timeout_s": 0.3, "consistency_deadline_s": 1.0})
    with pytest.raises(ApiTimeout):
        run_step(SecurityDeviceStep(), ctx, Mode.APPLY)  # the lookups outlast the server's delay
    assert _devices(step_sandbox, FRESH) == []
    again = _run(make_context, FRESH)
    assert again.plan.action == Action.CREATE and len(_devices(step_sandbox, FRESH)) == 1
    assert _writes(step_sandbox) == [("POST", 201)]  # the timed-out POST was dropped, not retried


def test_crash_right_after_the_post_then_rerun_leaves_one_device(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    ctx = _ctx(make_context, FRESH)
    step = SecurityDeviceStep()
    desired = step.desired(ctx)
    crashed = ctx.workbench.create_security_device(desired.organization_id, desired.name, desired.plugin_slug, desired.device_spec)
    result = _run(make_context, FRESH)
    assert result.plan.is_noop and result.observed["device_id"] == crashed.id
    assert [d["id"] for d in _devices(step_sandbox, FRESH)] == [crashed.id]


def test_a_5xx_on_the_post_is_not_retried_and_the_next_run_creates_one(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    step_sandbox.add_fault(service="workbench", kind="unavailable", method="POST", count=1)
    with pytest.raises(ServerError):
        run_step(SecurityDeviceStep(), _ctx(make_context, FRESH, timing={"consistency_deadline_s": 0.5}), Mode.APPLY)
    assert _devices(step_sandbox, FRESH) == []
    _run(make_context, FRESH)
    assert len(_devices(step_sandbox, FRESH)) == 1
    assert _writes(step_sandbox) == [("POST", 503), ("POST", 201)]


# --- existing devices ------------------------------------------------------------------------------------
def test_duplicates_are_reported_and_left_alone(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    ctx = _ctx(make_context, FRESH)
    desired = SecurityDeviceStep().desired(ctx)
    first, second = (ctx.workbench.create_security_device(WORKBENCH_ORG, desired.name, M365, desired.device_spec) for _ in range(2))
    result = _run(make_context, FRESH)
    assert result.plan.is_noop and result.observed["device_id"] == first.id
    assert result.observed["duplicates"] == [second.id] and second.id in result.plan.notes[0]
    assert _writes(step_sandbox) == [("POST", 201), ("POST", 201)]


def test_a_different_tenant_name_is_patched_on_the_same_device(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    ctx = _ctx(make_context, FRESH)
    old = ctx.workbench.create_security_device(WORKBENCH_ORG, "M365 (by hand)", M365, {"tenant_id": FRESH, "tenant_name": "Fresh"})
    result = _run(make_context, FRESH)
    assert result.plan.action == Action.UPDATE and [str(c) for c in result.plan.changes] == ["device_spec.tenant_name: 'Fresh' -> 'Fresh Corp'"]
    device = ctx.workbench.get_security_device(old.id)
    assert device.device_spec == {"tenant_id": FRESH, "tenant_name": "Fresh Corp"} and device.name == "M365 (by hand)"
    assert _writes(step_sandbox) == [("POST", 201), ("PATCH", 200)]


# --- health, data, alerts --------------------------------------------------------------------------------
def test_health_moves_from_the_first_check_to_waiting_for_data(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    assert _run(make_context, FRESH).waiting_for == "the first health check"
    step_sandbox.advance("10m")
    result = _run(make_context, FRESH)  # Fresh Corp's audit log is off: healthy, but no data
    assert (result.outcome, result.waiting_for) == (Outcome.WAITING, "data to flow (first vendor alert)")
    assert result.observed["status"] == "healthy" and result.observed["healthy_at"] is not None
    assert result.observed["stage"] == Stage.HEALTHY


def test_data_then_expel_alerts_arrive_and_the_step_converges(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    _run(make_context, CONFIGURED)
    step_sandbox.advance("10m")
    assert _run(make_context, CONFIGURED).waiting_for == "data to flow (first vendor alert)"
    step_sandbox.advance("75m")  # audit is on; data starts 75 min after the device is healthy
    flowing = _run(make_context, CONFIGURED)
    assert (flowing.outcome, flowing.waiting_for) == (Outcome.CONVERGED, None)
    assert flowing.observed["first_vendor_alert_at"] is not None and flowing.observed["first_expel_alert_at"] is None
    assert flowing.observed["stage"] == Stage.DATA_FLOWING
    step_sandbox.advance("48h")
    alerting = _run(make_context, CONFIGURED)
    assert alerting.observed["first_expel_alert_at"] > alerting.observed["first_vendor_alert_at"]
    assert (alerting.outcome, alerting.observed["stage"]) == (Outcome.CONVERGED, Stage.ALERTING)


def test_a_quiet_tenant_gets_data_but_never_an_expel_alert(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    _run(make_context, QUIET)
    step_sandbox.advance("90m")
    step_sandbox.advance("72h")
    result = _run(make_context, QUIET)
    assert result.outcome == Outcome.CONVERGED and result.observed["first_vendor_alert_at"] is not None
    assert result.observed["first_expel_alert_at"] is None and result.observed["stage"] == Stage.DATA_FLOWING


@pytest.mark.parametrize(("tenant", "reason"), [(UNHEALTHY, "ActivityFeed.Read"), (NEVER_CONSENTS, "admin consent")])
def test_an_unhealthy_device_needs_action_and_says_why(step_sandbox: SandboxHandle, make_context: Factory, tenant: str, reason: str) -> None:
    _run(make_context, tenant)
    step_sandbox.advance("10m")
    result = _run(make_context, tenant)
    assert result.outcome == Outcome.ACTION_REQUIRED and result.observed["stage"] == Stage.UNHEALTHY
    assert reason in present(result.waiting_for) and reason in result.observed["status_message"]


# --- refusals ---------------------------------------------------------------------------------------------
def test_a_device_spec_the_schema_refuses_is_device_rejected_with_the_detail(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    with pytest.raises(DeviceRejected) as caught:
        run_step(SecurityDeviceStep(), make_context("freshcorp.onmicrosoft.com", "Fresh Corp"), Mode.APPLY)
    assert "device_spec.tenant_id is not a valid Directory (tenant) ID" in caught.value.detail
    assert caught.value.detail in str(caught.value) and caught.value.status == 400
    assert _writes(step_sandbox) == [("POST", 400)]


def test_a_read_only_key_names_the_role_it_needs(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    assert _run(make_context, FRESH, Mode.PLAN, workbench_key="readonly").outcome == Outcome.PLANNED  # reads are fine
    with pytest.raises(WorkbenchRoleRequired) as caught:
        _run(make_context, FRESH, workbench_key="readonly")
    assert caught.value.status == 403 and "read-only" in str(caught.value)
    assert "Organization Admin" in str(caught.value) and "not read-only" in caught.value.next_action
    assert _devices(step_sandbox, FRESH) == []


def test_an_organization_the_key_cannot_see_stops_before_any_write(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    with pytest.raises(OrganizationNotVisible, match=OTHER_WORKBENCH_ORG):
        _run(make_context, FRESH, provider_org_id=OTHER_WORKBENCH_ORG)
    assert _writes(step_sandbox) == []


def test_missing_key_or_plugin_is_a_clear_error(step_sandbox: SandboxHandle, make_context: Factory) -> None:
    with pytest.raises(WorkbenchNotConfigured, match=r"WorkbenchCredentials"):
        _run(make_context, FRESH, workbench_key=None)
    ctx = _ctx(make_context, FRESH, provider={"workbench_plugin_name": "Office 365"})
    with pytest.raises(PluginNotFound, match=r"'Office 365'.*Microsoft 365"):
        run_step(SecurityDeviceStep(), ctx, Mode.APPLY)
