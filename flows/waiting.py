"""Durable waits for the onboarding flow: check, and if not there yet, come back later.

A wait is a series of numbered checks, each a cached task. Between two checks the run either
sleeps in-process (short pauses) or releases its worker: it schedules the resumer deployment at
the next check's time and suspends (long pauses). When the run re-executes after a resume, the
checks already made return from the cache, each suspend key has already fired, and the loop
arrives at the next check. The deadline is computed once and persisted, so a restart of the
worker or the server loses no wait.
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

from clients.errors import OnboardingError
from m365_onboarding.settings import WaitPolicy
from tasks.caching import ONCE_PER_RUN, ORCHESTRATION_RETRIES
from tasks.step import StepResult

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


@task(name="schedule_resume", persist_result=True, cache_policy=ONCE_PER_RUN, **ORCHESTRATION_RETRIES)
def schedule_resume(name: str, attempt: int, flow_run_id: str, at: datetime, deployment: str) -> str:
    """A run of the resumer deployment at ``at``; the idempotency key makes a repeat return the same run."""
    run = run_deployment(
        deployment,
        parameters={"flow_run_id": flow_run_id},
        scheduled_time=at,
        timeout=0,
        as_subflow=False,
        idempotency_key=f"{flow_run_id}:{name}:{attempt}",
        tags=["onboarding-resumer"],
    )
    return str(run.id)


def durable_wait(
    name: str,
    policy: WaitPolicy,
    check: Callable[[int], StepResult],
    done: Callable[[StepResult], bool],
    on_waiting: Callable[[StepResult, WaitWindow], None],
    on_stalled: Callable[[StepResult, WaitWindow], None],
    *,
    on_remind: Callable[[StepResult, WaitWindow], None] | None = None,
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
            schedule_resume(name, attempt, str(flow_run.id), next_at, resumer_deployment)
            remaining = (window.deadline - now) + GRACE
            suspend_flow_run(key=f"{name}-{attempt}", timeout=int(remaining.total_seconds()))
        else:
            logger.info("wait=%s attempt=%d not yet (%s); next check in %.1fs", name, attempt, result.waiting_for or result.message, pause)
            pause_in_process(name, attempt, pause)
        attempt += 1
