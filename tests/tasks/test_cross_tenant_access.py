"""Guide step 1b against the sandbox: create, patch only what differs, leave the rest alone."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from clients.errors import MissingPermission
from core.results import Action, Mode, Outcome
from tasks.context import TenantContext
from tasks.cross_tenant_access import CrossTenantAccessStep
from tasks.step import run_step
from tests.conftest import CONFIGURED, FRESH, PROVIDER_TENANT
from tests.sandbox_harness import SandboxHandle
from tests.support import present

PARTNERS = "/v1.0/policies/crossTenantAccessPolicy/partners"
ALL_TRUST = {"isMfaAccepted": True, "isCompliantDeviceAccepted": True, "isHybridAzureADJoinedDeviceAccepted": True}


def _partners(sandbox: SandboxHandle, tenant: str) -> list[dict]:
    return sandbox.tenant_state(tenant)["directory"]["partners"]


def _writes(sandbox: SandboxHandle, tenant: str) -> list[dict]:
    return [r for r in sandbox.request_log(service="graph", tenant=tenant) if r["method"] != "GET"]


def test_fresh_tenant_gets_the_provider_as_partner_with_all_trust(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    result = run_step(CrossTenantAccessStep(), make_context(FRESH), Mode.APPLY)
    assert result.outcome == Outcome.CONVERGED and result.plan.action == Action.CREATE
    (partner,) = _partners(step_sandbox, FRESH)
    assert partner["tenantId"] == PROVIDER_TENANT
    assert partner["inboundTrust"] == ALL_TRUST
    assert partner["automaticUserConsentSettings"]["inboundAllowed"] is True


def test_existing_partner_is_patched_only_where_it_differs_and_the_rest_kept(
    step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]
) -> None:
    ctx = make_context(FRESH)
    b2b = {"usersAndGroups": {"accessType": "blocked", "targets": [{"target": "AllUsers", "targetType": "user"}]}}
    ctx.graph.create_partner({"tenantId": PROVIDER_TENANT, "inboundTrust": {"isMfaAccepted": True}, "b2bCollaborationInbound": b2b,
                              "automaticUserConsentSettings": {"outboundAllowed": True}})
    step_sandbox.advance("31s")
    result = run_step(CrossTenantAccessStep(), make_context(FRESH), Mode.APPLY)
    assert result.plan.action == Action.UPDATE
    assert {c.field for c in result.plan.changes} == {"isCompliantDeviceAccepted", "isHybridAzureADJoinedDeviceAccepted", "inboundAllowed"}
    (partner,) = _partners(step_sandbox, FRESH)
    assert partner["inboundTrust"] == ALL_TRUST
    assert partner["automaticUserConsentSettings"] == {"inboundAllowed": True, "outboundAllowed": True}
    assert partner["b2bCollaborationInbound"] == b2b
    assert [w["method"] for w in _writes(step_sandbox, FRESH)] == ["POST", "PATCH"]


def test_configured_tenant_and_second_runs_write_nothing(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    assert run_step(CrossTenantAccessStep(), make_context(CONFIGURED), Mode.APPLY).plan.is_noop
    assert _writes(step_sandbox, CONFIGURED) == []
    run_step(CrossTenantAccessStep(), make_context(FRESH), Mode.APPLY)
    before = len(_writes(step_sandbox, FRESH))
    assert run_step(CrossTenantAccessStep(), make_context(FRESH), Mode.APPLY).plan.is_noop
    assert len(_writes(step_sandbox, FRESH)) == before


def test_rerun_after_a_crash_right_after_create_leaves_one_partner(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    ctx = make_context(FRESH)
    ctx.graph.create_partner({"tenantId": PROVIDER_TENANT})  # the crashed run's create, not yet replicated
    result = run_step(CrossTenantAccessStep(), make_context(FRESH), Mode.APPLY)
    assert result.outcome == Outcome.CONVERGED
    assert len(_partners(step_sandbox, FRESH)) == 1
    statuses = [(w["method"], w["status"]) for w in _writes(step_sandbox, FRESH)]
    assert statuses[1] == ("POST", 409)  # the re-run's create met the conflict and patched instead


@pytest.mark.parametrize("mode", [Mode.PLAN, Mode.GUIDE])
def test_plan_and_guide_write_nothing_and_guide_names_each_setting(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext], mode: Mode) -> None:
    result = run_step(CrossTenantAccessStep(), make_context(FRESH), mode)
    assert _writes(step_sandbox, FRESH) == []
    if mode == Mode.GUIDE:
        assert PROVIDER_TENANT in present(result.instructions)
        for label in ("multifactor", "compliant devices", "hybrid joined", "Automatically redeem"):
            assert label in present(result.instructions)


def test_a_read_only_token_cannot_apply_and_the_permission_is_named(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    from sandbox.core.tokens import TokenSigner

    ctx = make_context(FRESH)
    signer = TokenSigner(step_sandbox.state_dir / "token-signing-key.pem")
    token = signer.issue({"aud": "https://graph.microsoft.com", "tid": FRESH, "appid": step_sandbox.client_id, "roles": ["Policy.Read.All"]},
                         issuer=f"https://sts.windows.net/{FRESH}/")
    ctx.graph._authorization = lambda: f"Bearer {token}"
    with pytest.raises(MissingPermission) as caught:
        run_step(CrossTenantAccessStep(), ctx, Mode.APPLY)
    assert caught.value.permission == "Policy.ReadWrite.CrossTenantAccess"
