"""Durable waits for the onboarding flow: check, and if not there yet, come back later.

A wait is a series of numbered checks, each a cached task. Between two checks the run either
sleeps in-process (short pauses) or releases its worker: it schedules the resumer deployment at
the next check's time and suspends (long pauses). When the run re-executes after a resume, the
checks already made return from the cache, each suspend key has already fired, and the loop
arrives at the next check. The deadline is computed once and persisted, so a restart of the
worker or the server loses no wait.

Waking a run costs a process that re-executes it, so the resumer run carries a :class:`PreCheck`:
it checks the step first (guide mode: never the customer's settings) and wakes the run only when
the wait's condition holds, the check fails, or the run's next stall, reminder or limit time has
come; otherwise it schedules its own successor at the next interval (``flows/resume_onboarding.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prefect import get_run_logger, task
from prefect.context import FlowRunContext
from prefect.deployments import run_deployment
from prefect.flow_runs import suspend_flow_run
from pydantic import BaseModel, ConfigDict

from clients.errors import OnboardingError
from m365_onboarding.settings import WaitPolicy
from tasks.caching import ONCE_PER_RUN, ORCHESTRATION_RETRIES
from tasks.runtime import BlockNames, TenantRequest
from tasks.step import StepResult

# Marks the resumer runs a wait schedules (its checks), so that a crashed one is restarted too.
WAIT_CHECK_TAG = "onboarding-resumer"

GRACE = timedelta(hours=1)


class WaitLimitReached(OnboardingError):
    """A wait passed its limit without seeing what it waited for."""

    next_action = "Look at the tenant's checklist artifact for the last observation, fix the cause, and start a new onboarding run."


@dataclass(frozen=True)
class WaitWindow:
    started_at: datetime
    stalled_at: datetime
    deadline: datetime


@task(name="open_wait", persist_result=True, cache_policy=ONCE_PER_RUN)
def open_wait(name: str, policy: WaitPolicy) -> WaitWindow:
    """When this wait started, when it counts as stalled, and its deadline: fixed on the first execution."""
    now = datetime.now(UTC)
    return WaitWindow(now, now + timedelta(seconds=policy.stall_s), now + timedelta(seconds=policy.limit_s))


@task(name="pause_in_process", persist_result=True, cache_policy=ONCE_PER_RUN)
def pause_in_process(name: str, attempt: int, seconds: float) -> None:
    """A short pause, recorded so that a re-executed run does not sleep it again."""
    time.sleep(max(0.0, seconds))


class PreCheck(BaseModel):
    """What the resumer checks before it wakes a suspended run (block names, no secrets)."""

    model_config = ConfigDict(frozen=True)

    wait: str
    step: str
    condition: str  # a key of tasks.wait_conditions.WAIT_DONE
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
    run = run_deployment(
        deployment,
        parameters=parameters,
        scheduled_time=at,
        timeout=0,
        as_subflow=False,
        idempotency_key=f"{flow_run_id}:{key}",
        tags=[WAIT_CHECK_TAG],
    )
    return str(run.id)


def _wake_by(window: WaitWindow, policy: WaitPolicy, now: datetime, reminds: bool) -> datetime:
    """The earliest moment the run itself must act again (stall, reminder, limit), whatever it observes."""
    moments = [window.deadline]
    if now < window.stalled_at:
        moments.append(window.stalled_at)
    if reminds and policy.remind_s is not None and now < (remind_at := window.started_at + timedelta(seconds=policy.remind_s)):
        moments.append(remind_at)
    return min(moments)


def durable_wait(
    name: str,
    policy: WaitPolicy,
    check: Callable[[int], StepResult],
    done: Callable[[StepResult], bool],
    on_waiting: Callable[[StepResult, WaitWindow], None],
    on_stalled: Callable[[StepResult, WaitWindow], None],
    *,
    on_remind: Callable[[StepResult, WaitWindow], None] | None = None,
    precheck: PreCheck | None = None,
    suspend_from_s: float,
    resumer_deployment: str,
) -> tuple[StepResult, bool]:
    """Check until ``done``; return the last result and whether it is done (False: limit reached)."""
    logger = get_run_logger()
    window = open_wait(name, policy)
    attempt = 0
    while True:
        result = check(attempt)
        if done(result):
            return result, True
        now = datetime.now(UTC)
        if now >= window.deadline:
            return result, False
        if attempt == 0:
            on_waiting(result, window)
        if on_remind is not None and policy.remind_s is not None and now >= window.started_at + timedelta(seconds=policy.remind_s):
            on_remind(result, window)  # the callback sends once per run (a cached task)
        if now >= window.stalled_at:
            on_stalled(result, window)
        next_at = min(now + timedelta(seconds=policy.interval_s), window.deadline)
        pause = (next_at - now).total_seconds()
        context = FlowRunContext.get()
        flow_run = context.flow_run if context else None
        if flow_run is not None and flow_run.deployment_id is not None and pause >= suspend_from_s:
            logger.info("wait=%s attempt=%d not yet (%s); releasing the worker until %s", name, attempt, result.waiting_for or result.message, next_at.isoformat())
            key = f"{name}-{attempt}"
            if precheck is not None:
                precheck = precheck.model_copy(update={"suspend_key": key, "interval_s": policy.interval_s,
                                                       "wake_by": _wake_by(window, policy, now, on_remind is not None)})
            schedule_resume(key, str(flow_run.id), next_at, resumer_deployment, precheck)
            remaining = (window.deadline - now) + GRACE
            suspend_flow_run(key=key, timeout=int(remaining.total_seconds()))
        else:
            logger.info("wait=%s attempt=%d not yet (%s); next check in %.1fs", name, attempt, result.waiting_for or result.message, pause)
            pause_in_process(name, attempt, pause)
        attempt += 1
