"""Each onboarding step as a Prefect task: retries for transient failures only, one result per step.

A task takes the tenant request, the mode and block names (no secrets), builds the context,
runs the step, and returns its :class:`~tasks.step.StepResult`. Transient failures (throttling,
5xx, connection problems, a change not yet replicated) are retried with backoff and jitter;
anything a person must fix (a missing permission, a wrong tenant) fails at once with its message.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.tasks import exponential_backoff

from clients.errors import ApiConnectionError, ServerError, StepNotConverged, Throttled
from tasks.admin_consent import AdminConsentStep
from tasks.console_access import ConsoleAccessStep
from tasks.cross_tenant_access import CrossTenantAccessStep
from tasks.caching import ONCE_PER_RUN
from tasks.preflight import StepMode, preflight
from tasks.runtime import BlockNames, TenantRequest, build_context
from tasks.security_device import SecurityDeviceStep
from tasks.step import Mode, StepResult, run_step
from tasks.tenant import TenantCheck, check_tenant
from tasks.unified_audit_log import UnifiedAuditLogStep, restart_silent_subscriptions

TRANSIENT = (Throttled, ServerError, ApiConnectionError, StepNotConverged)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what time can fix."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, TRANSIENT)


_RETRY_OPTIONS: dict[str, Any] = {
    "retries": 5,
    "retry_delay_seconds": exponential_backoff(backoff_factor=10),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_transient,
}


@task(name="check_tenant", task_run_name="check-tenant-{request.tenant_id}", persist_result=True, cache_policy=ONCE_PER_RUN, **_RETRY_OPTIONS)
def check_tenant_task(request: TenantRequest, blocks: BlockNames) -> TenantCheck:
    """Validate the tenant id and organization name before anything changes."""
    return check_tenant(build_context(request, blocks))


def _run(step: Any, request: TenantRequest, mode: Mode, blocks: BlockNames) -> StepResult:
    ctx = build_context(request, blocks)
    check = check_tenant(ctx)  # also learns the initial domain used to find the guest by UPN
    ctx.extra["initial_domain"] = check.initial_domain
    return run_step(step, ctx, mode)


@task(name="admin_consent", task_run_name="admin-consent-{request.tenant_id}", **_RETRY_OPTIONS)
def check_admin_consent(request: TenantRequest, blocks: BlockNames) -> StepResult:
    """Guide step 3: has the customer's admin consented, with every permission?"""
    return _run(AdminConsentStep(), request, Mode.APPLY, blocks)


@task(name="console_access", task_run_name="console-access-{request.tenant_id}", **_RETRY_OPTIONS)
def ensure_console_access(request: TenantRequest, mode: Mode, blocks: BlockNames) -> StepResult:
    """Guide step 1a: the SOC guest with Global Reader."""
    return _run(ConsoleAccessStep(), request, mode, blocks)


@task(name="cross_tenant_access", task_run_name="cross-tenant-access-{request.tenant_id}", **_RETRY_OPTIONS)
def ensure_cross_tenant_access(request: TenantRequest, mode: Mode, blocks: BlockNames) -> StepResult:
    """Guide step 1b: the provider's tenant as trusted partner."""
    return _run(CrossTenantAccessStep(), request, mode, blocks)


@task(name="unified_audit_log", task_run_name="unified-audit-log-{request.tenant_id}", **_RETRY_OPTIONS)
def ensure_unified_audit_log(request: TenantRequest, mode: Mode, blocks: BlockNames) -> StepResult:
    """Guide step 2: auditing on, in effect, and the provider's subscriptions started."""
    return _run(UnifiedAuditLogStep(), request, mode, blocks)


@task(name="security_device", task_run_name="security-device-{request.tenant_id}", **_RETRY_OPTIONS)
def ensure_security_device(request: TenantRequest, blocks: BlockNames) -> StepResult:
    """Guide step 4: the tenant registered in Workbench; its health and data as observed."""
    return _run(SecurityDeviceStep(), request, Mode.APPLY, blocks)


STEPS: dict[str, Any] = {
    "admin_consent": AdminConsentStep,
    "console_access": ConsoleAccessStep,
    "cross_tenant_access": CrossTenantAccessStep,
    "unified_audit_log": UnifiedAuditLogStep,
    "security_device": SecurityDeviceStep,
}


@task(name="check_step", task_run_name="{step}-{purpose}-{attempt}", persist_result=True, cache_policy=ONCE_PER_RUN, **_RETRY_OPTIONS)
def check_step(step: str, purpose: str, attempt: int, request: TenantRequest, mode: Mode, blocks: BlockNames) -> StepResult:
    """One run of a step for the flow: numbered, so that a re-executed flow gets each back from the cache."""
    return _run(STEPS[step](), request, mode, blocks)


def precheck_step(step: str, request: TenantRequest, blocks: BlockNames) -> StepResult:
    """What the resumer looks at before it wakes a waiting run: the step in guide mode.

    Guide mode never changes the customer's settings, but does the provider's own part as the run's
    check would: once auditing is in effect, only starting the provider's Management Activity
    subscriptions ends the audit wait, which plan mode would never see.
    """
    return _run(STEPS[step](), request, Mode.GUIDE, blocks)


@task(name="restart_silent_subscriptions", persist_result=True, cache_policy=ONCE_PER_RUN, **_RETRY_OPTIONS)
def restart_silent_subscriptions_task(request: TenantRequest, blocks: BlockNames) -> str:
    """Once per run, on a first-data stall: restart the Management Activity subscriptions that deliver nothing."""
    return restart_silent_subscriptions(build_context(request, blocks))


@task(name="choose_modes", persist_result=True, cache_policy=ONCE_PER_RUN, **_RETRY_OPTIONS)
def choose_step_modes(request: TenantRequest, blocks: BlockNames, forced: dict[str, Mode]) -> dict[str, StepMode]:
    """Preflight: apply where the granted permissions allow, guide where they only allow reading."""
    return preflight(build_context(request, blocks), forced)
