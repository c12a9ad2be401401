"""The shape every onboarding step shares: observe → plan → apply → verify.

A step is a small class with those four methods (Microsoft365DSC's Get/Test/Set, Terraform's
plan/apply). :func:`run_step` runs them in order for a mode: ``plan`` stops after the plan (the
dry run), ``guide`` returns the customer's instructions instead of applying, ``apply`` changes only
what differs and then reads back until the desired state is seen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from core.catalogue import Step, StepName, WaitPolicyName, WaitSpec
from core.results import Action, Change, Mode, Outcome, StepResult
from tasks.context import TenantContext
from tasks.errors import StepNotConverged

logger = logging.getLogger("m365_onboarding.steps")


def diff(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> list[Change]:
    """Every field of ``desired`` whose observed value differs (all of them, not just the first)."""
    return [Change(field=k, current=observed.get(k), desired=v) for k, v in desired.items() if observed.get(k) != v]


T = TypeVar("T")


def wait_until_consistent(
    read: Callable[[], T],
    is_desired: Callable[[T], bool],
    *,
    deadline_s: float,
    interval_s: float,
    consecutive: int,
    what: str,
    differing: Callable[[T], list[str]] = lambda _: [],
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> T:
    """Read until ``consecutive`` reads in a row show the desired state, or raise StepNotConverged.

    Entra replicates writes asynchronously, so one good read can be followed by a stale one from
    another replica; several in a row (Terraform waits for 3) is the safe signal.
    """
    end = monotonic() + deadline_s
    streak = 0
    while True:
        value = read()
        streak = streak + 1 if is_desired(value) else 0
        if streak >= consecutive:
            return value
        if monotonic() >= end:
            fields = differing(value)
            raise StepNotConverged(
                f"{what} did not show the desired state within {deadline_s:g}s"
                + (f"; still differing: {', '.join(fields)}" if fields else ""),
                fields,
            )
        sleep(interval_s)


def run_step(step: Step[TenantContext, Any, Any], ctx: TenantContext, mode: Mode) -> StepResult:
    """Observe, plan, and (in apply mode) apply and verify one step for one tenant."""
    tenant_id = ctx.tenant_id
    desired = step.desired(ctx)
    observed = step.observe(ctx)
    plan = step.plan(ctx, desired, observed)
    logger.info("tenant=%s step=%s mode=%s action=%s %s", tenant_id, step.name, mode.value, plan.action.value,
                "fields=" + ",".join(c.field for c in plan.changes) if plan.changes else "")

    def result(outcome: Outcome, message: str, seen: BaseModel, **extra: Any) -> StepResult:
        return StepResult(
            step=step.name, tenant_id=tenant_id, mode=mode, plan=plan, outcome=outcome, message=message,
            observed=seen.model_dump(mode="json"), **extra,
        )

    if plan.is_noop:
        outcome, waiting_for = step.settled(observed)
        return result(outcome, str(plan), observed, waiting_for=waiting_for)
    if mode == Mode.PLAN:
        return result(Outcome.PLANNED, str(plan), observed)
    if mode == Mode.GUIDE or plan.action == Action.MANUAL:
        customer = plan.model_copy(update={"changes": [c for c in plan.changes if c.by == "customer"]})
        provider = plan.model_copy(update={"changes": [c for c in plan.changes if c.by == "provider"]})
        if provider.changes and plan.action != Action.MANUAL:
            ctx.before_write()
            step.apply(ctx, desired, observed, provider)  # the provider's own part needs no customer
        if customer.changes or plan.action == Action.MANUAL:
            text = step.instructions(ctx, desired, customer)
            return result(Outcome.ACTION_REQUIRED, str(customer), observed, instructions=text, waiting_for="the customer's admin")
    else:
        ctx.before_write()
        step.apply(ctx, desired, observed, plan)
    verified = step.verify(ctx, desired)
    outcome, waiting_for = step.settled(verified)
    logger.info("tenant=%s step=%s verified outcome=%s", tenant_id, step.name, outcome.value)
    return result(outcome, f"{step.name}: applied and verified ({plan})", verified, waiting_for=waiting_for)



def call_until_replicated(
    call: Callable[[], T],
    *,
    retry_on: tuple[type[BaseException], ...],
    deadline_s: float,
    interval_s: float,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> T:
    """Repeat a write that fails only because an object it refers to has not replicated yet.

    Backs off from ``interval_s`` doubling up to 30 s, as Microsoft's guidance for a 404 after a
    create suggests; the last error is raised when the deadline passes.
    """
    end = monotonic() + deadline_s
    pause = interval_s
    while True:
        try:
            return call()
        except retry_on:
            if monotonic() >= end:
                raise
            logger.info("%s: referenced object not replicated yet, retrying in %.1fs", what, pause)
            sleep(pause)
            pause = min(pause * 2, 30.0)


def wait_for_state(
    ctx: TenantContext,
    read: Callable[[], T],
    is_desired: Callable[[T], bool],
    *,
    what: str,
    differing: Callable[[T], list[str]] = lambda _: [],
    consecutive: int | None = None,
) -> T:
    """:func:`wait_until_consistent` with the deadline, pace and streak from the context's settings."""
    timing = ctx.settings.timing
    return wait_until_consistent(
        read,
        is_desired,
        deadline_s=timing.consistency_deadline_s,
        interval_s=timing.consistency_interval_s,
        consecutive=consecutive or timing.consistent_reads,
        what=f"tenant {ctx.tenant_id}: {what}",
        differing=differing,
    )


def retry_until_replicated(ctx: TenantContext, call: Callable[[], T], *, retry_on: tuple[type[BaseException], ...], what: str) -> T:
    """:func:`call_until_replicated` with the deadline and pace from the context's settings."""
    timing = ctx.settings.timing
    return call_until_replicated(
        call,
        retry_on=retry_on,
        deadline_s=timing.consistency_deadline_s,
        interval_s=timing.consistency_interval_s,
        what=f"tenant {ctx.tenant_id}: {what}",
    )


# --- what ends a wait, and the wait every guide-mode step shares ---------------------------------------
def converged(result: StepResult) -> bool:
    """The desired state is verified."""
    return result.outcome == Outcome.CONVERGED


def customer_changed(result: StepResult) -> bool:
    """Guide mode: the admin's change is seen; what is left (e.g. activation) is outside their hands."""
    return result.outcome in (Outcome.CONVERGED, Outcome.WAITING)


def guide_mode_wait(step: StepName, customer_action: str, stall_next_action: str) -> WaitSpec:
    """The wait of a step in guide mode: its checks read the tenant until the customer's admin made the change."""
    return WaitSpec(name=step, policy=WaitPolicyName.CUSTOMER_CHANGE, done=customer_changed, waiting_for="the customer's admin",
                    customer_action=customer_action, stall_next_action=stall_next_action)
