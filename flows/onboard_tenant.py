"""Onboard one customer's Microsoft 365 tenant to the MDR provider, from first check to first alerts.

Reads like the provider's guide, in the order its dependencies allow:

    tenant check → admin consent (step 3, waits for the customer's admin)
      → console access, cross-tenant access and audit log (steps 1 and 2) and the security device (step 4), in parallel
      → auditing in effect → device healthy → data flowing → first alerts

The steps, their waits and what each wait means come from the catalogue (``tasks/catalogue.py``).
Every wait has an expected duration, a stall threshold (people are told) and a limit (the run
fails), from settings. Long pauses release the worker (``flows/waiting.py``); the run shows as
Suspended in the UI, with the tenant's checklist artifact saying what it waits for and until when.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from core.catalogue import StepName, StepSpec
from core.requests import OnboardingRequest
from core.results import Mode, Outcome
from core.settings import OnboardingSettings
from flows.claim import claim_tenant
from flows.errors import StepBlocked
from flows.run import OnboardingReport, OnboardingRun, publish_report
from flows.waiting import WaitRunner
from tasks import admin_consent
from tasks.catalogue import CATALOGUE
from tasks.fencing import begin_execution
from tasks.preflight import StepMode
from tasks.step_tasks import check_tenant_task, choose_step_modes, step_task
from tasks.tracking import Transition


# Results in JSON, never pickled (the tasks inherit it); where they are stored is the deployment's
# PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK, which `deploy` points at storage every worker shares.
@flow(name="onboard-tenant", flow_run_name="onboard-{request.organization_name}", persist_result=True, result_serializer="json")
def onboard_tenant(request: OnboardingRequest) -> OnboardingReport:
    """Onboard one tenant; returns the final report (every verified setting and its evidence)."""
    settings = OnboardingSettings()
    tenant, blocks = request.tenant, request.blocks
    claim_tenant(tenant)
    begin_execution()  # a later execution of this run (after a crash) makes this process stop before it writes
    run = OnboardingRun(request)
    waits = WaitRunner(run, settings)

    # Before anything changes: is this the tenant the team means?
    run.mark(StepName.TENANT, Transition.STARTED)
    check = run.guarded(StepName.TENANT, check_tenant_task, tenant, blocks)
    run.completed(StepName.TENANT, detail=check.display_name or "exists (name checked once consented)")

    # Step 3, first: every other call needs the customer's admin consent.
    run.mark(StepName.ADMIN_CONSENT, Transition.STARTED)
    consent = waits.wait_for(admin_consent.CONSENT, step_task(admin_consent.SPEC), Mode.APPLY)
    run.completed(StepName.ADMIN_CONSENT, consent)
    run.guarded(StepName.TENANT, check_tenant_task.with_options(task_run_name="check-tenant-named"), tenant, blocks, after_consent=True)

    # Steps 1, 2 and 4 in parallel, each in the mode the granted permissions allow.
    modes = run.guarded(StepName.ADMIN_CONSENT, choose_step_modes, tenant, blocks, request.modes.forced())
    for choice in modes.values():
        if choice.mode == "blocked":
            run.fail(choice.step, StepBlocked(f"{choice.step}: {choice.reason}"))
    steps = [spec for spec, _ in CATALOGUE.planned() if spec is not admin_consent.SPEC]
    for spec in steps:
        run.mark(spec.name, Transition.STARTED, _chosen(modes.get(spec.name)))
    running = {spec: step_task(spec).submit(tenant, blocks, _mode(spec, modes)) for spec in steps}
    for spec, future in running.items():
        result = run.guarded(spec.name, future.result)
        if result.outcome == Outcome.ACTION_REQUIRED and spec.guide_wait is not None:  # guide mode: read until the admin did it
            result = waits.wait_for(spec.guide_wait, step_task(spec), _mode(spec, modes))
        run.completed(spec.name, result)

    # The long waits, each with its own expected duration, stall threshold and limit, checked in
    # the mode of their step. A step in plan mode changed nothing, so nothing after it can take
    # effect (auditing off means no data): with one, no milestone is waited for.
    planned = [spec.name for spec in steps if _mode(spec, modes) == Mode.PLAN]
    for milestone in CATALOGUE.milestones():
        if planned:
            run.skipped(milestone.name, f"not waited for: {', '.join(planned)} ran in plan mode")
            continue
        run.mark(milestone.name, Transition.STARTED)
        step = CATALOGUE.step_of(milestone.name)
        result = waits.wait_for(milestone, step_task(step), _mode(step, modes))
        run.completed(milestone.name, result)

    report = run.report()
    publish_report(tenant, report)
    get_run_logger().info("tenant=%s onboarding finished: %s", tenant.tenant_id, report.outcome)
    return report


def _mode(spec: StepSpec, modes: dict[StepName, StepMode]) -> Mode:
    """The mode the preflight chose (never "blocked" here: blocked steps failed the run), else apply."""
    choice = modes.get(spec.name)
    return Mode(choice.mode) if choice is not None else Mode.APPLY


def _chosen(choice: StepMode | None) -> str:
    return f"{choice.mode} mode: {choice.reason}" if choice is not None else ""
