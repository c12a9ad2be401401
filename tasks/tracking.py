"""What people see of a tenant's onboarding: custom events, the tenant's checklist and a progress bar.

Everything here runs inside tasks whose results are persisted and cached per flow run, so a flow
that re-executes after a suspend emits each transition once and does not duplicate artifacts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import INPUTS, RUN_ID
from prefect.context import FlowRunContext
from prefect.events import emit_event
from pydantic import BaseModel, Field

from core.catalogue import StepName
from core.dispatch import sync_result
from core.requests import TenantRequest
from tasks.caching import ONCE_PER_RUN, ORCHESTRATION_RETRIES, STEP_ID
from tasks.catalogue import CATALOGUE


class Transition(StrEnum):
    STARTED = "started"
    WAITING = "waiting"
    STALLED = "stalled"
    COMPLETED = "completed"
    PLANNED = "planned"  # plan mode: its changes are listed, nothing was applied (or waited for)
    FAILED = "failed"


class StepStatus(BaseModel):
    """One line of the checklist."""

    state: str = "pending"
    since: datetime | None = None
    detail: str = ""
    waiting_for: str | None = None
    until: datetime | None = None
    next_action: str | None = None


class Checklist(BaseModel):
    """The tenant's onboarding at a glance; rebuilt the same way on every re-execution."""

    steps: dict[StepName, StepStatus] = Field(default_factory=lambda: {line.name: StepStatus() for line in CATALOGUE.lines()})

    def set(self, step: StepName, transition: Transition, at: datetime, detail: str = "", **extra: Any) -> None:
        self.steps[step] = StepStatus(state=transition.value, since=at, detail=detail, **extra)

    @property
    def done_fraction(self) -> float:
        return sum(1 for s in self.steps.values() if s.state == Transition.COMPLETED) / len(self.steps)

    def markdown(self, request: TenantRequest) -> str:
        marks = {"completed": "✅", "planned": "📝", "waiting": "⏳", "stalled": "⚠️", "failed": "❌", "started": "▶️", "pending": "⬜"}
        lines = [
            f"# Onboarding: {request.organization_name}",
            f"Tenant `{request.tenant_id}` · provider organization `{request.provider_org_id}`",
            "",
            "| | step | state | since | waiting for | until | next action |",
            "|---|---|---|---|---|---|---|",
        ]
        for line in CATALOGUE.lines():
            s, label = self.steps[line.name], line.numbered(line.title)
            since = s.since.strftime("%Y-%m-%d %H:%M UTC") if s.since else ""
            until = s.until.strftime("%Y-%m-%d %H:%M UTC") if s.until else ""
            lines.append(f"| {marks.get(s.state, '')} | {label} | {s.state} {s.detail} | {since} | {s.waiting_for or ''} | {until} | {s.next_action or ''} |")
        return "\n".join(lines)


def tenant_resource(request: TenantRequest) -> dict[str, str]:
    return {"prefect.resource.id": f"m365.tenant.{request.tenant_id}", "prefect.resource.name": request.organization_name}


@task(
    name="record_transition",
    task_run_name="{step}-{transition}",
    persist_result=True,
    # Once per step and transition in a run, whatever the details: a re-executed flow replays it.
    cache_policy=STEP_ID + (INPUTS - "checklist" - "detail" - "extra") + RUN_ID,
    **ORCHESTRATION_RETRIES,
)
def record_transition(
    request: TenantRequest, step: StepName, transition: Transition, checklist: Checklist, detail: str = "", extra: dict[str, Any] | None = None
) -> Checklist:
    """Emit ``onboarding.step.<transition>`` once, and publish the checklist with this transition in it."""
    at = datetime.now(UTC)
    checklist = checklist.model_copy(deep=True)
    checklist.set(step, transition, at, detail, **(extra or {}))
    status = checklist.steps[step]
    run = FlowRunContext.get()
    emit_event(
        # The same id on a retry: the server stores an event id once.
        id=uuid5(NAMESPACE_URL, f"{run.flow_run.id if run and run.flow_run else 'local'}/{request.tenant_id}/{step}/{transition.value}"),
        event=f"onboarding.step.{transition.value}",
        resource={**tenant_resource(request), "onboarding.step": step.value},
        # What a person needs in a notification: the automations' message templates read these.
        payload={"step": step.value, "detail": detail, "tenant_id": request.tenant_id, "organization": request.organization_name,
                 "waiting_for": status.waiting_for, "next_action": status.next_action,
                 "until": status.until.isoformat() if status.until else None},
    )
    create_markdown_artifact(
        markdown=checklist.markdown(request),
        key=f"onboarding-{request.tenant_id}",
        description=f"Onboarding checklist of {request.organization_name}",
    )
    return checklist


@task(name="create_progress", persist_result=True, cache_policy=ONCE_PER_RUN, **ORCHESTRATION_RETRIES)
def create_progress(request: TenantRequest) -> UUID:
    return sync_result(create_progress_artifact(progress=0.0, key=f"progress-{request.tenant_id}",
                                                description=f"Onboarding progress of {request.organization_name}"))


@task(name="update_progress", persist_result=True, cache_policy=ONCE_PER_RUN, **ORCHESTRATION_RETRIES)
def update_progress(artifact_id: UUID, fraction: float) -> None:
    update_progress_artifact(artifact_id=artifact_id, progress=round(fraction * 100, 1))


@task(
    name="record_retry",
    task_run_name="{step}-retried",
    persist_result=True,
    cache_policy=STEP_ID + (INPUTS - "finding") + RUN_ID,  # once per step, action and run
    **ORCHESTRATION_RETRIES,
)
def record_retry(request: TenantRequest, step: StepName, action: str, finding: str) -> None:
    """Emit ``onboarding.step.retried``: what was retried automatically on a stall, and what it found."""
    run = FlowRunContext.get()
    emit_event(
        id=uuid5(NAMESPACE_URL, f"{run.flow_run.id if run and run.flow_run else 'local'}/{request.tenant_id}/{step}/retried/{action}"),
        event="onboarding.step.retried",
        resource={**tenant_resource(request), "onboarding.step": step.value},
        payload={"step": step.value, "action": action, "detail": finding, "tenant_id": request.tenant_id, "organization": request.organization_name},
    )


@task(
    name="record_undelivered",
    task_run_name="{kind}-undelivered",
    persist_result=True,
    cache_policy=STEP_ID + (INPUTS - "reason") + RUN_ID,  # once per message kind and run
    **ORCHESTRATION_RETRIES,
)
def record_undelivered(request: TenantRequest, kind: str, reason: str) -> None:
    """Emit ``onboarding.message.undelivered``: a customer message whose channel failed (it is tried again)."""
    run = FlowRunContext.get()
    emit_event(
        id=uuid5(NAMESPACE_URL, f"{run.flow_run.id if run and run.flow_run else 'local'}/{request.tenant_id}/{kind}/undelivered"),
        event="onboarding.message.undelivered",
        resource=tenant_resource(request),
        payload={"kind": kind, "detail": reason, "tenant_id": request.tenant_id, "organization": request.organization_name},
    )
