"""A waiting run's next check: a run of the resumer deployment, scheduled for when the check is due.

Kept apart from the wait runner so that the resumer, which imports this, starts without the
steps and their clients unless it has a pre-check to make.
"""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.deployments import run_deployment
from pydantic import BaseModel, ConfigDict

from core.catalogue import StepName
from core.dispatch import sync_result
from core.requests import BlockNames, TenantRequest
from core.tags import WAIT_CHECK_TAG
from tasks.caching import ONCE_PER_RUN, ORCHESTRATION_RETRIES


class PreCheck(BaseModel):
    """What the resumer checks before it wakes a suspended run (block names, no secrets)."""

    model_config = ConfigDict(frozen=True)

    wait: StepName  # the catalogue says what the wait checks and what ends it
    request: TenantRequest
    blocks: BlockNames
    suspend_key: str = ""  # the pause this pre-check belongs to
    interval_s: float = 0.0  # time between two pre-checks (already scaled)
    wake_by: datetime | None = None  # the run's next stall, reminder or limit time: wake it then regardless


@task(name="schedule_resume", persist_result=True, cache_policy=ONCE_PER_RUN, **ORCHESTRATION_RETRIES)
def schedule_resume(key: str, flow_run_id: str, at: datetime, deployment: str, precheck: PreCheck | None = None, prechecks: int = 0) -> str:
    """A run of the resumer deployment at ``at``; the idempotency key makes a repeat return the same run."""
    parameters: dict[str, object] = {"flow_run_id": flow_run_id}
    if precheck is not None:
        parameters |= {"precheck": precheck.model_dump(mode="json"), "prechecks": prechecks}
    run = sync_result(run_deployment(
        deployment,
        parameters=parameters,
        scheduled_time=at,
        timeout=0,
        as_subflow=False,
        idempotency_key=f"{flow_run_id}:{key}",
        tags=[WAIT_CHECK_TAG],
    ))
    return str(run.id)
