"""Guide step 2 against the sandbox: enable auditing, wait for it to take effect, subscribe."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from clients.errors import AuditLogOff, MissingPermission, PermissionDenied
from core.results import Mode, Outcome
from tasks.context import TenantContext
from tasks.step import run_step
from tasks.unified_audit_log import UnifiedAuditLogStep, restart_silent_subscriptions
from tests.conftest import CONFIGURED, DEHYDRATED, FRESH, OTHER_ORG, PARTIAL
from tests.sandbox_harness import SandboxHandle
from tests.support import present

ALL_TYPES = ["Audit.AzureActiveDirectory", "Audit.Exchange", "Audit.General", "Audit.SharePoint", "DLP.All"]


def _cmdlets(sandbox: SandboxHandle, tenant: str) -> list[str]:
    return [r["operation"] for r in sandbox.request_log(service="exchange", tenant=tenant)]


def _management_writes(sandbox: SandboxHandle, tenant: str) -> list[dict]:
    return [r for r in sandbox.request_log(service="management_activity", tenant=tenant) if r["method"] == "POST"]


def test_fresh_tenant_is_enabled_then_waits_then_subscribes(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    first = run_step(UnifiedAuditLogStep(), make_context(FRESH), Mode.APPLY)
    assert first.outcome == Outcome.WAITING and "take effect" in present(first.waiting_for)
    assert first.observed["ingestion_enabled"] is True and first.observed["subscriptions"] == []
    assert "Set-AdminAuditLogConfig" in _cmdlets(step_sandbox, FRESH)
    step_sandbox.advance("46m")
    second = run_step(UnifiedAuditLogStep(), make_context(FRESH), Mode.APPLY)
    assert second.outcome == Outcome.CONVERGED and second.observed["subscriptions"] == ALL_TYPES
    writes = len(_management_writes(step_sandbox, FRESH)) + _cmdlets(step_sandbox, FRESH).count("Set-AdminAuditLogConfig")
    third = run_step(UnifiedAuditLogStep(), make_context(FRESH), Mode.APPLY)
    assert third.plan.is_noop and third.outcome == Outcome.CONVERGED
    assert len(_management_writes(step_sandbox, FRESH)) + _cmdlets(step_sandbox, FRESH).count("Set-AdminAuditLogConfig") == writes


def test_a_dehydrated_org_is_customized_before_auditing_is_enabled(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    result = run_step(UnifiedAuditLogStep(), make_context(DEHYDRATED), Mode.APPLY)
    assert {c.field for c in result.plan.changes} == {"organization_customization", "UnifiedAuditLogIngestionEnabled", "subscriptions"}
    cmdlets = _cmdlets(step_sandbox, DEHYDRATED)
    assert cmdlets.index("Enable-OrganizationCustomization") < cmdlets.index("Set-AdminAuditLogConfig")
    state = step_sandbox.tenant_state(DEHYDRATED)["exchange"]
    assert state["isDehydrated"] is False and state["unifiedAuditLogIngestionEnabled"] is True


def test_a_configured_tenant_is_converged_without_writes(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    result = run_step(UnifiedAuditLogStep(), make_context(CONFIGURED), Mode.APPLY)
    assert result.plan.is_noop and result.outcome == Outcome.CONVERGED
    assert "Set-AdminAuditLogConfig" not in _cmdlets(step_sandbox, CONFIGURED)
    assert _management_writes(step_sandbox, CONFIGURED) == []


def test_plan_mode_writes_nothing(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    result = run_step(UnifiedAuditLogStep(), make_context(DEHYDRATED), Mode.PLAN)
    assert result.outcome == Outcome.PLANNED
    assert _cmdlets(step_sandbox, DEHYDRATED) == ["Get-AdminAuditLogConfig", "Get-OrganizationConfig"]  # observed once, nothing set
    assert _management_writes(step_sandbox, DEHYDRATED) == []


def test_guide_mode_gives_the_commands_and_changes_nothing_on_the_customer_side(
    step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]
) -> None:
    result = run_step(UnifiedAuditLogStep(), make_context(DEHYDRATED), Mode.GUIDE)
    assert result.outcome == Outcome.ACTION_REQUIRED
    assert "Enable-OrganizationCustomization" in present(result.instructions)
    assert "Set-AdminAuditLogConfig -UnifiedAuditLogIngestionEnabled $true" in present(result.instructions)
    assert "60 minutes" in present(result.instructions)
    assert _cmdlets(step_sandbox, DEHYDRATED) == ["Get-AdminAuditLogConfig", "Get-OrganizationConfig"]  # observed once, nothing set


def test_guide_mode_still_starts_the_providers_subscriptions_once_auditing_is_on(
    step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]
) -> None:
    ctx = make_context(FRESH)
    ctx.exchange.set_unified_audit_log_ingestion(True)  # the customer's admin did it
    step_sandbox.advance("46m")
    result = run_step(UnifiedAuditLogStep(), make_context(FRESH), Mode.GUIDE)
    assert result.outcome == Outcome.CONVERGED and result.observed["subscriptions"] == ALL_TYPES


def test_subscribing_before_auditing_is_in_effect_is_audit_log_off(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    with pytest.raises(AuditLogOff) as caught:
        make_context(FRESH).management.start_subscription("Audit.General")
    assert FRESH in str(caught.value) and "Set-AdminAuditLogConfig" in str(caught.value)


def test_without_activity_feed_read_the_permission_is_named(make_context: Callable[..., TenantContext]) -> None:
    with pytest.raises((MissingPermission, PermissionDenied)) as caught:
        run_step(UnifiedAuditLogStep(), make_context(PARTIAL), Mode.APPLY)
    assert "ActivityFeed.Read" in str(caught.value)


def test_an_app_with_only_a_read_role_cannot_enable_and_the_role_is_named(make_context: Callable[..., TenantContext]) -> None:
    with pytest.raises((MissingPermission, PermissionDenied)) as caught:
        run_step(UnifiedAuditLogStep(), make_context(OTHER_ORG), Mode.APPLY)
    assert "Exchange Administrator" in str(caught.value)


def test_subscriptions_that_deliver_nothing_are_restarted_and_ones_that_deliver_are_left_alone(
    step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]
) -> None:
    run_step(UnifiedAuditLogStep(), make_context(FRESH), Mode.APPLY)
    step_sandbox.advance("46m")
    assert run_step(UnifiedAuditLogStep(), make_context(FRESH), Mode.APPLY).outcome == Outcome.CONVERGED
    step_sandbox.advance("20m")  # past the 15 minutes Microsoft asks between two starts; no content yet (first after ~2 h)
    stops = lambda: [r for r in _management_writes(step_sandbox, FRESH) if r["path"].endswith("/stop")]  # noqa: E731

    found = restart_silent_subscriptions(make_context(FRESH))
    assert found == f"restarted 5 Management Activity subscription(s) that delivered nothing: {', '.join(sorted(ALL_TYPES))}"
    assert len(stops()) == 5

    step_sandbox.advance("4h")
    assert restart_silent_subscriptions(make_context(FRESH)) == "all 5 Management Activity subscriptions deliver content; nothing restarted"
    assert len(stops()) == 5
