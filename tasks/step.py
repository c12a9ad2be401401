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
from enum import StrEnum
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from clients.errors import StepNotConverged

logger = logging.getLogger("m365_onboarding.steps")


class Mode(StrEnum):
    """How a customer-side step runs."""

    APPLY = "apply"  # the provider's app holds the write permission and makes the change
    GUIDE = "guide"  # the customer's admin makes the change from our instructions; we only read
    PLAN = "plan"  # dry run: observe and plan, change nothing


class Action(StrEnum):
    NONE = "none"
    CREATE = "create"
    UPDATE = "update"
    MANUAL = "manual"  # only the customer's admin can do it (e.g. admin consent)


class Outcome(StrEnum):
    CONVERGED = "converged"  # the desired state is verified
    WAITING = "waiting"  # done on our side; waiting for something outside our control
    PLANNED = "planned"  # plan mode: the changes are listed, nothing was applied
    ACTION_REQUIRED = "action_required"  # guide mode or a manual action: a person must act


class Change(BaseModel):
    """One field that differs: what it is now and what it should be."""

    model_config = ConfigDict(frozen=True)

    field: str
    current: Any
    desired: Any
    by: Literal["customer", "provider"] = Field(
        default="customer", description="Whose side the change is on: guide mode still applies the provider's own."
    )

    def __str__(self) -> str:
        return f"{self.field}: {self.current!r} -> {self.desired!r}"


class Plan(BaseModel):
    """What a step would change; empty when the tenant is already in the desired state."""

    step: str
    tenant_id: str
    action: Action
    changes: list[Change] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def is_noop(self) -> bool:
        return self.action == Action.NONE

    def __str__(self) -> str:
        if self.is_noop:
            return f"{self.step}: in the desired state, nothing to change"
        details = "; ".join(str(c) for c in self.changes) or "; ".join(self.notes)
        return f"{self.step}: {self.action.value} ({details})"


class StepResult(BaseModel):
    """What a step run did and saw: the plan, the outcome, evidence and any instructions."""

    step: str
    tenant_id: str
    mode: Mode
    plan: Plan
    outcome: Outcome
    message: str
    observed: dict[str, Any] = Field(default_factory=dict)
    instructions: str | None = None
    waiting_for: str | None = None


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


D = TypeVar("D", bound=BaseModel)
O = TypeVar("O", bound=BaseModel)  # noqa: E741 - O for "observed", as in the step docs
C = TypeVar("C", contravariant=True)


class Step(Protocol, Generic[C, D, O]):  # type: ignore[misc]
    """What each step module provides (see ``tasks/console_access.py`` for one)."""

    name: str

    def desired(self, ctx: C) -> D: ...

    def observe(self, ctx: C) -> O: ...

    def plan(self, ctx: C, desired: D, observed: O) -> Plan: ...

    def apply(self, ctx: C, desired: D, observed: O, plan: Plan) -> None: ...

    def verify(self, ctx: C, desired: D) -> O: ...

    def instructions(self, ctx: C, desired: D, plan: Plan) -> str: ...

    def settled(self, observed: O) -> tuple[Outcome, str | None]: ...


def run_step(step: Step[Any, Any, Any], ctx: Any, mode: Mode) -> StepResult:
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
            step.apply(ctx, desired, observed, provider)  # the provider's own part needs no customer
        if customer.changes or plan.action == Action.MANUAL:
            text = step.instructions(ctx, desired, customer)
            return result(Outcome.ACTION_REQUIRED, str(customer), observed, instructions=text, waiting_for="the customer's admin")
    else:
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
    ctx: Any,
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


def retry_until_replicated(ctx: Any, call: Callable[[], T], *, retry_on: tuple[type[BaseException], ...], what: str) -> T:
    """:func:`call_until_replicated` with the deadline and pace from the context's settings."""
    timing = ctx.settings.timing
    return call_until_replicated(
        call,
        retry_on=retry_on,
        deadline_s=timing.consistency_deadline_s,
        interval_s=timing.consistency_interval_s,
        what=f"tenant {ctx.tenant_id}: {what}",
    )
