"""The onboarding steps as Prefect tasks: one task per step, retries for transient failures only.

A task takes the tenant request, the block names and the mode (no secrets), runs its step on
this process's context for the tenant (:func:`tasks.runtime.context_for`) and returns its
:class:`~core.results.StepResult`. Every check of a run is a task run of its own (``wait`` and
``attempt`` name it), persisted and cached, so a re-executed flow gets each back instead of
repeating it. Transient failures (throttling, 5xx, connection problems, a change not yet
replicated) are retried with backoff and jitter; anything a person must fix (a missing
permission, a wrong tenant) fails at once with its message.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from prefect import Task, task
from prefect.runtime import task_run
from prefect.tasks import exponential_backoff

from clients.errors import ApiConnectionError, ServerError, Throttled
from core.catalogue import StepName, StepSpec
from core.requests import BlockNames, TenantRequest
from core.results import Mode, StepResult
from core.settings import declared_settings
from tasks.caching import ONCE_PER_RUN
from tasks.catalogue import CATALOGUE
from tasks.context import TenantCheck
from tasks.errors import StepNotConverged
from tasks.preflight import StepMode, preflight
from tasks.runtime import context_for
from tasks.step import run_step
from tasks.tenant import check_tenant, tenant_checked

# What time can fix. A check's time is bounded by the HTTP layer (a connect and a read timeout per
# request, a fixed number of retries), not by a task timeout: Prefect cannot interrupt a blocking
# call in the worker thread a submitted step runs in, and says so in a warning per task.
TRANSIENT = (Throttled, ServerError, ApiConnectionError, StepNotConverged, TimeoutError)


MAX_THROTTLE_WAIT_S = 600.0  # a longer Retry-After is the wait's business: its next check comes later anyway


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what time can fix; after a 429, not before the service's Retry-After has passed.

    Prefect's retry delay cannot depend on the error, so the rest of the Retry-After (seconds or an
    HTTP-date, longer than the in-process cap of the HTTP layer) is slept here, before that delay.
    """
    error = state.result(raise_on_failure=False)
    if isinstance(error, Throttled) and error.retry_after:
        time.sleep(min(error.retry_after, MAX_THROTTLE_WAIT_S))
    return isinstance(error, TRANSIENT)


_timing = declared_settings().timing
STEP_RETRIES: dict[str, Any] = {
    "retries": _timing.step_retries,
    "retry_delay_seconds": exponential_backoff(backoff_factor=_timing.step_retry_backoff_s),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_transient,
}


@task(name="check_tenant", task_run_name="check-tenant-{request.tenant_id}", persist_result=True, cache_policy=ONCE_PER_RUN, **STEP_RETRIES)
def check_tenant_task(request: TenantRequest, blocks: BlockNames, after_consent: bool = False) -> TenantCheck:
    """Validate the tenant id, and the organization name once it is readable; ``after_consent`` makes it a check of its own."""
    return check_tenant(context_for(request, blocks))


def _check_name() -> str:
    parameters = task_run.parameters
    return f"{task_run.task_name}-{parameters.get('wait') or 'apply'}-{parameters.get('attempt', 0)}"


StepTask = Task[..., StepResult]


@cache
def step_task(spec: StepSpec) -> StepTask:
    """The task of one step, named after it; each call is one check: ``<step>-<wait or apply>-<attempt>``."""
    step = spec.step
    if step is None:
        raise ValueError(f"{spec.name} has no step to run")

    def ensure(request: TenantRequest, blocks: BlockNames, mode: Mode, wait: StepName | None = None, attempt: int = 0) -> StepResult:
        ctx = context_for(request, blocks)
        tenant_checked(ctx)  # learns the initial domain, and verifies the name once per process
        return run_step(step, ctx, mode)

    # A name of its own, for the task key and the cache key (tasks/caching.py's STEP_ID).
    ensure.__name__ = ensure.__qualname__ = f"ensure_{spec.name.value}"
    ensure.__doc__ = f"{spec.line.numbered(spec.title)}: observe, plan, and in apply mode apply and verify."
    return task(name=spec.name.value, task_run_name=_check_name, persist_result=True, cache_policy=ONCE_PER_RUN, **STEP_RETRIES)(ensure)


@task(name="retry_on_stall", task_run_name="{wait}-retried", persist_result=True, cache_policy=ONCE_PER_RUN, **STEP_RETRIES)
def retry_on_stall(request: TenantRequest, blocks: BlockNames, wait: StepName) -> str:
    """Once per run, on a stalled wait: what its catalogue entry tries by itself; returns what it found."""
    retry = CATALOGUE.wait(wait).on_stall
    if retry is None:
        raise ValueError(f"the wait {wait} tries nothing by itself on a stall")
    ctx = context_for(request, blocks)
    tenant_checked(ctx)
    return retry.run(ctx)


@task(name="choose_modes", persist_result=True, cache_policy=ONCE_PER_RUN, **STEP_RETRIES)
def choose_step_modes(request: TenantRequest, blocks: BlockNames, forced: dict[str, Mode]) -> dict[StepName, StepMode]:
    """Preflight: apply where the granted permissions allow, guide where they only allow reading."""
    return preflight(context_for(request, blocks), forced)


def precheck_step(wait: StepName, request: TenantRequest, blocks: BlockNames) -> StepResult:
    """What the resumer looks at before it wakes a waiting run: the wait's step in plan mode.

    The resumer holds no claim on the tenant, so it never writes, not even the provider's own part:
    a plan with provider-side changes (Management Activity subscriptions to start once auditing is
    in effect, a device to register again) wakes the run, which makes them under its claim.
    """
    ctx = context_for(request, blocks)
    tenant_checked(ctx)
    return run_step(CATALOGUE.check_of(wait), ctx, Mode.PLAN)


def provider_has_work(result: StepResult) -> bool:
    """The plan has changes on the provider's side, which only the onboarding run makes."""
    return any(change.by == "provider" for change in result.plan.changes)
