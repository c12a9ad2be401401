"""Onboard one customer's Microsoft 365 tenant to the MDR provider, from first check to first alerts.

Reads like the provider's guide, in the order its dependencies allow:

    tenant check → admin consent (step 3, waits for the customer's admin)
      → console access, cross-tenant access and audit log (steps 1 and 2) in parallel
      → security device registered (step 4)
      → auditing in effect → device healthy → data flowing → first alerts

Every wait has an expected duration, a stall threshold (people are told) and a limit (the run
fails), from settings. Long pauses release the worker (see ``flows/waiting.py``); the run shows as
Suspended in the UI, with the tenant's checklist artifact saying what it waits for and until when.
"""

from __future__ import annotations

import re
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterId, FlowRunFilter, FlowRunFilterId, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run as current_flow_run
from pydantic import BaseModel, ConfigDict, Field, field_validator

from clients.errors import OnboardingError
from flows.waiting import PreCheck, WaitLimitReached, WaitWindow, durable_wait
from m365_onboarding.settings import OnboardingSettings
from tasks.admin_consent import require_consent
from tasks.caching import ONCE_PER_RUN, ORCHESTRATION_RETRIES
from tasks.preflight import CUSTOMER_STEPS
from tasks.prefect_tasks import check_step, check_tenant_task, choose_step_modes, restart_silent_subscriptions_task
from tasks.runtime import BlockNames, TenantRequest
from tasks.step import Mode, Outcome, StepResult
from tasks.customer_messages import first_request, notify_customer, reminder
from tasks.wait_conditions import WAIT_DONE, WAITING_FOR
from tasks.tracking import Checklist, Transition, create_progress, record_retry, record_transition, update_progress

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class StepModes(BaseModel):
    """Force a mode per customer-side step; empty means the preflight chooses."""

    console_access: Mode | None = None
    cross_tenant_access: Mode | None = None
    unified_audit_log: Mode | None = None


class OnboardingRequest(TenantRequest):
    """Everything the onboarding team gives for one customer (the Prefect UI shows it as a form)."""

    model_config = ConfigDict(frozen=True)

    customer_contact_email: str = Field(description="The customer's admin, who receives the consent link and reminders.")
    modes: StepModes = Field(default_factory=StepModes, description="Optional: force guide or plan mode per step.")
    blocks: BlockNames = Field(default_factory=BlockNames, description="Names of the saved credential blocks.")

    @field_validator("customer_contact_email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value.strip()):
            raise ValueError(f"not an email address: {value!r}")
        return value.strip()

    @property
    def tenant(self) -> TenantRequest:
        return TenantRequest(tenant_id=self.tenant_id, organization_name=self.organization_name, provider_org_id=self.provider_org_id)


class AlreadyOnboarding(OnboardingError):
    """Another onboarding run for the same tenant is still active."""

    next_action = "Follow the active run in the Prefect UI, or cancel it before starting a new one."


CUSTOMER_WAITS = ("admin_consent", *CUSTOMER_STEPS)  # waits that only the customer's admin can end


def recheck_consent_on_stall(tenant: TenantRequest, blocks: BlockNames, tracker: _Tracker) -> None:
    """Automatic retry on a stalled device: check consent and every permission again, and say what was found."""
    try:
        found = check_step("admin_consent", "stall-recheck", 0, tenant, Mode.APPLY, blocks)
        finding = "consent and every permission are still granted" if found.outcome == Outcome.CONVERGED else found.message
    except OnboardingError as exc:
        finding = str(exc)
    get_run_logger().warning("tenant=%s step=device_healthy stalled; re-checked admin consent: %s", tenant.tenant_id, finding)
    record_retry(tenant, "device_healthy", "recheck_admin_consent", finding)


def restart_subscriptions_on_stall(tenant: TenantRequest, blocks: BlockNames) -> None:
    """Automatic retry on a first-data stall: restart the subscriptions that delivered nothing."""
    try:
        finding = restart_silent_subscriptions_task(tenant, blocks)
    except OnboardingError as exc:
        finding = f"could not restart the subscriptions: {exc}"
    get_run_logger().warning("tenant=%s step=first_data stalled; %s", tenant.tenant_id, finding)
    record_retry(tenant, "first_data", "restart_management_subscriptions", finding)


ACTIVE = [StateType.RUNNING, StateType.PENDING, StateType.PAUSED, StateType.SCHEDULED, StateType.CANCELLING]


@task(name="claim_tenant", persist_result=True, cache_policy=ONCE_PER_RUN, **ORCHESTRATION_RETRIES)
def claim_tenant(request: TenantRequest) -> str:
    """Tag this run with the tenant, and refuse to go on while an earlier run for it is active.

    Runs are matched on their parameters, not on tags, because a run that has not started yet has
    no tag; the earliest active run keeps the tenant, so two runs started together never both go on.
    """
    run_id = current_flow_run.id
    tag = f"tenant:{request.tenant_id}"
    with get_client(sync_client=True) as client:
        this = client.read_flow_run(run_id)
        client.update_flow_run(run_id, tags=sorted({*this.tags, tag}))
        active: list[Any] = []
        while True:  # the API pages at 200 runs
            page = client.read_flow_runs(
                flow_filter=FlowFilter(id=FlowFilterId(any_=[this.flow_id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE)),
                    id=FlowRunFilterId(not_any_=[run_id]),
                ),
                limit=200,
                offset=len(active),
            )
            active.extend(page)
            if len(page) < 200:
                break
    earlier = [
        r
        for r in active
        if str((r.parameters.get("request") or {}).get("tenant_id", "")).lower() == request.tenant_id.lower()
        and (r.created, str(r.id)) < (this.created, str(this.id))
    ]
    if earlier:
        raise AlreadyOnboarding(f"Tenant {request.tenant_id} is already being onboarded by run {earlier[0].name} ({earlier[0].id}).")
    return tag


@task(name="publish_report", persist_result=True, cache_policy=ONCE_PER_RUN, **ORCHESTRATION_RETRIES)
def publish_report(request: TenantRequest, report: dict[str, Any]) -> None:
    lines = [f"# Onboarding report: {request.organization_name}", f"Tenant `{request.tenant_id}`", ""]
    for name, result in report["steps"].items():
        lines.append(f"## {name}: {result['outcome']}")
        lines.append(result["message"])
        evidence = ", ".join(f"{k}={v}" for k, v in result["observed"].items() if v not in (None, [], {}, ""))
        if evidence:
            lines.append(f"Evidence: {evidence}")
        lines.append("")
    lines.append(f"**Outcome:** {report['outcome']}")
    create_markdown_artifact(markdown="\n".join(lines), key=f"report-{request.tenant_id}", description=f"Onboarding report of {request.organization_name}")


@flow(name="onboard-tenant", flow_run_name="onboard-{request.organization_name}", persist_result=True)
def onboard_tenant(request: OnboardingRequest) -> dict[str, Any]:
    """Onboard one tenant; returns the final report (every verified setting and its evidence)."""
    settings = OnboardingSettings()
    logger = get_run_logger()
    tenant, blocks = request.tenant, request.blocks
    claim_tenant(tenant)
    tracker = _Tracker(tenant, create_progress(tenant))
    results: dict[str, StepResult] = {}

    def step_wait(wait: str, step: str, mode: Mode, condition: str, policy_name: str | None = None) -> tuple[StepResult, bool]:
        policy = settings.waits.policy(policy_name or wait)
        on_customer = wait in CUSTOMER_WAITS  # only the customer's admin can end this wait: tell them, remind them
        provider = settings.provider.display_name
        customer_block = settings.notifications.customer_block

        def waiting(result: StepResult, window: WaitWindow) -> None:
            tracker.mark(wait, Transition.WAITING, result.message, waiting_for=result.waiting_for or WAITING_FOR.get(wait),
                         until=window.deadline, next_action=result.instructions)
            if on_customer:
                notify_customer(tenant, f"{wait}-request", *first_request(tenant, request.customer_contact_email, wait, result.instructions, provider), customer_block, request.customer_contact_email)

        def remind(result: StepResult, window: WaitWindow) -> None:
            waited_h = (policy.remind_s or 0) * settings.waits.time_scale / 3600
            notify_customer(tenant, f"{wait}-reminder", *reminder(tenant, request.customer_contact_email, wait, result.instructions, provider, waited_h), customer_block, request.customer_contact_email)

        def stalled(result: StepResult, window: WaitWindow) -> None:
            tracker.mark(wait, Transition.STALLED, f"expected within {policy.expected_s:.0f}s", waiting_for=result.waiting_for or WAITING_FOR.get(wait),
                         until=window.deadline, next_action=result.instructions)
            if wait == "device_healthy":  # an unhealthy device is most often a permission the admin withdrew
                recheck_consent_on_stall(tenant, blocks, tracker)
            elif wait == "first_data":  # a subscription that delivers nothing is restarted once
                restart_subscriptions_on_stall(tenant, blocks)

        return durable_wait(
            wait, policy, lambda attempt: check_step(step, wait, attempt, tenant, mode, blocks), WAIT_DONE[condition], waiting, stalled,
            on_remind=remind if on_customer else None,
            precheck=PreCheck(wait=wait, step=step, condition=condition, request=tenant, blocks=blocks),
            suspend_from_s=settings.waits.suspend_from_s / settings.waits.time_scale,
            resumer_deployment=settings.resumer_deployment,
        )

    # Before anything changes: is this the tenant the team means?
    tracker.mark("tenant", Transition.STARTED)
    check = tracker.guard("tenant", lambda: check_tenant_task(tenant, blocks))
    tracker.mark("tenant", Transition.COMPLETED, check.display_name or "exists (name checked once consented)")

    # Step 3, first: every other call needs the customer's admin consent.
    tracker.mark("admin_consent", Transition.STARTED)
    consent, ok = step_wait("admin_consent", "admin_consent", Mode.APPLY, "converged")
    results["admin_consent"] = consent
    if not ok:
        tracker.guard("admin_consent", lambda: require_consent(consent))
    tracker.mark("admin_consent", Transition.COMPLETED)
    check = tracker.guard("tenant", lambda: check_tenant_task.with_options(task_run_name="check-tenant-named")(tenant, blocks))

    # Steps 1 and 2 in parallel, each in the mode the granted permissions allow.
    forced = {k: v for k, v in request.modes.model_dump().items() if v is not None}
    modes = tracker.guard("admin_consent", lambda: choose_step_modes(tenant, blocks, forced))
    blocked = [m for m in modes.values() if m.mode == "blocked"]
    if blocked:
        tracker.guard(blocked[0].step, lambda: (_ for _ in ()).throw(OnboardingError(f"{blocked[0].step}: {blocked[0].reason}")))
    for name in CUSTOMER_STEPS:
        tracker.mark(name, Transition.STARTED, f"{modes[name].mode} mode: {modes[name].reason}")
    futures = {name: check_step.submit(name, "apply", 0, tenant, Mode(modes[name].mode), blocks) for name in CUSTOMER_STEPS}
    device_future = check_step.submit("security_device", "apply", 0, tenant, Mode.APPLY, blocks)
    for name, future in futures.items():
        result = tracker.guard(name, future.result)
        if result.outcome == Outcome.ACTION_REQUIRED:  # guide mode: wait, read-only, until the admin did it
            result, ok = step_wait(name, name, Mode(modes[name].mode), "customer_change", "customer_change")
            if not ok:
                tracker.fail(name, WaitLimitReached(f"{name}: the customer's change was not seen before the limit."))
        results[name] = result
        tracker.mark(name, Transition.COMPLETED, result.message)

    # Step 4: the device is registered as soon as consent is verified.
    results["security_device"] = tracker.guard("security_device", device_future.result)
    tracker.mark("security_device", Transition.COMPLETED, results["security_device"].message)

    # The long waits, each with its own expected duration, stall threshold and limit.
    milestones = (
        ("audit_activation", "unified_audit_log", "converged"),
        ("device_healthy", "security_device", "device_healthy"),
        ("first_data", "security_device", "first_data"),
        ("first_alerts", "security_device", "first_alerts"),
    )
    outcome = "onboarded: alerts are flowing"
    for wait, step, condition in milestones:
        tracker.mark(wait, Transition.STARTED)
        result, ok = step_wait(wait, step, Mode.APPLY, condition)
        results[wait] = result
        if ok:
            tracker.mark(wait, Transition.COMPLETED, result.message)
        elif wait == "first_alerts":  # a quiet tenant is onboarded; it just raised nothing yet
            outcome = "onboarded: data flowing, no alert in the alert window"
            tracker.mark(wait, Transition.COMPLETED, "no alert yet in the window; the device is healthy and data flows")
        else:
            tracker.fail(wait, WaitLimitReached(f"{wait}: not reached before the limit; last seen: {result.waiting_for}"))
    report = {
        "tenant_id": tenant.tenant_id,
        "organization_name": tenant.organization_name,
        "outcome": outcome,
        "steps": {name: r.model_dump(mode="json") for name, r in results.items()},
    }
    publish_report(tenant, report)
    logger.info("tenant=%s onboarding finished: %s", tenant.tenant_id, outcome)
    return report


class _Tracker:
    """Checklist and progress for the flow body; every call goes through cached tasks."""

    def __init__(self, request: TenantRequest, progress_id: Any) -> None:
        self.request = request
        self.progress_id = progress_id
        self.checklist = Checklist()

    def mark(self, step: str, transition: Transition, detail: str = "", **extra: Any) -> None:
        self.checklist = record_transition(self.request, step, transition, self.checklist, detail, extra or None)
        update_progress(self.progress_id, self.checklist.done_fraction)

    def fail(self, step: str, error: Exception) -> None:
        self.mark(step, Transition.FAILED, str(error), next_action=getattr(error, "next_action", None))
        raise error

    def guard(self, step: str, call: Any) -> Any:
        """Run ``call``; on failure record the step as failed (one event) and fail the run with its message."""
        try:
            return call()
        except OnboardingError as exc:
            self.fail(step, exc)
