"""One tenant's onboarding as the flow body keeps it: its checklist, each step's result, its outcome.

Every mark goes through cached tasks (``tasks/tracking.py``), so a run that re-executes after a
resume emits each transition once and rebuilds the same checklist. The report is typed
(:class:`OnboardingReport`): the flow returns it and publishes it as the tenant's report artifact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

from prefect import task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from core.catalogue import StepName
from core.errors import OnboardingError
from core.requests import OnboardingRequest, TenantRequest
from core.results import Outcome, StepResult
from tasks.caching import ONCE_PER_RUN, ORCHESTRATION_RETRIES
from tasks.tracking import Checklist, Transition, create_progress, record_transition, update_progress

ONBOARDED = "onboarded: alerts are flowing"

P = ParamSpec("P")
T = TypeVar("T")


class OnboardingReport(BaseModel):
    """What the onboarding of one tenant verified: each step's result and evidence, and the outcome."""

    tenant_id: str
    organization_name: str
    outcome: str
    steps: dict[StepName, StepResult]


class OnboardingRun:
    """The checklist, results and outcome of one run; the flow body marks each step through it."""

    def __init__(self, request: OnboardingRequest) -> None:
        self.request = request
        self.tenant: TenantRequest = request.tenant
        self.checklist = Checklist()
        self.progress_id = create_progress(self.tenant)
        self.results: dict[StepName, StepResult] = {}
        self.planned: list[StepName] = []  # steps that ran in plan mode: listed their changes, applied nothing
        self.outcome = ONBOARDED

    def mark(self, step: StepName, transition: Transition, detail: str = "", **extra: Any) -> None:
        """Record one transition of a checklist line: one event, the checklist and the progress bar."""
        self.checklist = record_transition(self.tenant, step, transition, self.checklist, detail, extra or None)
        update_progress(self.progress_id, self.checklist.done_fraction)

    def fail(self, step: StepName, error: Exception) -> NoReturn:
        """Record the line as failed (one event, with the next action) and fail the run with the error."""
        self.mark(step, Transition.FAILED, str(error), next_action=getattr(error, "next_action", None))
        raise error

    def guarded(self, step: StepName, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``call(*args, **kwargs)``; an error a person must act on fails ``step`` with its message."""
        try:
            return call(*args, **kwargs)
        except OnboardingError as exc:
            self.fail(step, exc)

    def completed(self, step: StepName, result: StepResult | None = None, detail: str = "") -> None:
        """Record the line as done; a plan-mode result is recorded as planned, never as done."""
        if result is not None:
            self.results[step] = result
            if result.outcome == Outcome.PLANNED:
                self.planned.append(step)
                self.skipped(step, result.message)
                return
        self.mark(step, Transition.COMPLETED, detail or (result.message if result else ""))

    def skipped(self, step: StepName, detail: str) -> None:
        """Record a line that plan mode left alone: planned, not done."""
        self.mark(step, Transition.PLANNED, detail)

    def report(self) -> OnboardingReport:
        outcome = self.outcome
        if self.planned:
            names = ", ".join(dict.fromkeys(self.planned))
            outcome = f"planned: {names} ran in plan mode and changed nothing, so no milestone was waited for; start a run without plan mode to apply"
        return OnboardingReport(tenant_id=self.tenant.tenant_id, organization_name=self.tenant.organization_name,
                                outcome=outcome, steps=self.results)


@task(name="publish_report", persist_result=True, cache_policy=ONCE_PER_RUN, **ORCHESTRATION_RETRIES)
def publish_report(request: TenantRequest, report: OnboardingReport) -> None:
    """The tenant's report artifact: every step's outcome, message and evidence."""
    lines = [f"# Onboarding report: {request.organization_name}", f"Tenant `{request.tenant_id}`", ""]
    for name, result in report.steps.items():
        lines.append(f"## {name}: {result.outcome}")
        lines.append(result.message)
        evidence = ", ".join(f"{k}={v}" for k, v in result.observed.items() if v not in (None, [], {}, ""))
        if evidence:
            lines.append(f"Evidence: {evidence}")
        lines.append("")
    lines.append(f"**Outcome:** {report.outcome}")
    create_markdown_artifact(markdown="\n".join(lines), key=f"report-{request.tenant_id}", description=f"Onboarding report of {request.organization_name}")
