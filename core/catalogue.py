"""The shape of the step catalogue: what each onboarding step declares about itself, once.

Each step module in ``tasks/`` declares one :class:`StepSpec`: its name, how people read it, its
permissions per mode, whether the preflight chooses its mode, what it observes and changes, and
its waits (what ends each one, its policy, who only can end it, what is tried by itself when it
stalls). ``tasks/catalogue.py`` lists the specs in the guide's order; the flow, the preflight, the
dry run, ``status``, the automations and the permission table read them from there. This module
holds only the types, so the bottom layer can name a step without importing one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from core.permissions import StepPermissions, requested_permissions
from core.results import Outcome, Plan, StepResult


class StepName(StrEnum):
    """A line of a tenant's checklist: a step of the guide, or a milestone a step waits for.

    The values are what events (``onboarding.step``), automations and ``status`` show.
    """

    TENANT = "tenant"
    ADMIN_CONSENT = "admin_consent"
    CONSOLE_ACCESS = "console_access"
    CROSS_TENANT_ACCESS = "cross_tenant_access"
    UNIFIED_AUDIT_LOG = "unified_audit_log"
    AUDIT_ACTIVATION = "audit_activation"
    SECURITY_DEVICE = "security_device"
    DEVICE_HEALTHY = "device_healthy"
    FIRST_DATA = "first_data"
    FIRST_ALERTS = "first_alerts"


class WaitPolicyName(StrEnum):
    """A wait policy: a field of :class:`core.settings.WaitSettings`, hence ``M365_ONBOARD_WAITS__<NAME>__…``."""

    ADMIN_CONSENT = StepName.ADMIN_CONSENT.value
    CUSTOMER_CHANGE = "customer_change"  # a step in guide mode waiting for the customer's admin
    AUDIT_ACTIVATION = StepName.AUDIT_ACTIVATION.value
    DEVICE_HEALTHY = StepName.DEVICE_HEALTHY.value
    FIRST_DATA = StepName.FIRST_DATA.value
    FIRST_ALERTS = StepName.FIRST_ALERTS.value


C = TypeVar("C", contravariant=True)
D = TypeVar("D", bound=BaseModel)
O = TypeVar("O", bound=BaseModel)  # noqa: E741 - O for "observed", as in the step docs


class Step(Protocol[C, D, O]):
    """observe → plan → apply → verify for one tenant (``tasks/console_access.py`` is one)."""

    name: StepName

    def desired(self, ctx: C) -> D: ...

    def observe(self, ctx: C) -> O: ...

    def plan(self, ctx: C, desired: D, observed: O) -> Plan: ...

    def apply(self, ctx: C, desired: D, observed: O, plan: Plan) -> None: ...

    def verify(self, ctx: C, desired: D) -> O: ...

    def instructions(self, ctx: C, desired: D, plan: Plan) -> str: ...

    def settled(self, observed: O) -> tuple[Outcome, str | None]: ...


@dataclass(frozen=True)
class Line:
    """A line of the tenant's checklist, as people read it."""

    name: StepName
    label: str  # short, for a table: "Admin consent"
    title: str  # long, for the checklist artifact: "API connectivity: admin consent with every permission"
    guide_step: int | None = None  # the guide's step number, written before the label

    def numbered(self, text: str) -> str:
        return f"{self.guide_step}. {text}" if self.guide_step else text


@dataclass(frozen=True)
class StallRetry:
    """What a stalled wait tries by itself, once per run; the team hears what it found."""

    action: str  # its name in the onboarding.step.retried event, e.g. "recheck_admin_consent"
    run: Callable[[Any], str]  # given the tenant's context, does it and says what it found


@dataclass(frozen=True)
class QuietEnd:
    """A wait whose limit ends the onboarding well: nothing came, and that is an answer too."""

    outcome: str  # the report's outcome, e.g. "onboarded: data flowing, no alert in the alert window"
    detail: str  # the checklist line's detail


@dataclass(frozen=True)
class WaitSpec:
    """One wait of a step: what ends it, its policy, who only can end it, what it tries when it stalls.

    A wait marks its step's own checklist line (``name`` is the step's name: admin consent, a step
    in guide mode) or a milestone line of its own, which then needs a ``label`` and ``title``.
    """

    name: StepName
    policy: WaitPolicyName  # the WaitSettings field with its expected duration, stall threshold and limit
    done: Callable[[StepResult], bool]  # does this observation end the wait?
    stall_next_action: str  # what the team should do when it stalls
    waiting_for: str | None = None  # what people are told it waits for, unless the observation says it better
    customer_action: str | None = None  # only the customer's admin can end it: what they are asked to do
    label: str | None = None
    title: str | None = None
    on_stall: StallRetry | None = None
    quiet_end: QuietEnd | None = None  # reaching the limit completes the onboarding instead of failing it
    limit_error: Callable[[StepResult], Exception] | None = None  # the step's own error at the limit (default: WaitLimitReached)
    # The resumer looks (plan mode, no writes) before it wakes the run; False where only a write of
    # the run's shows the end, so each check wakes the run directly instead of looking first in vain.
    prechecked: bool = True

    @property
    def on_customer(self) -> bool:
        return self.customer_action is not None


@dataclass(frozen=True)
class StepSpec:
    """One step of the provider's guide, declared once in its own module under ``tasks/``."""

    name: StepName
    label: str
    title: str
    guide_step: int | None
    # Application permissions per mode; None where the step needs no Entra permission (the Workbench key).
    permissions: StepPermissions | None
    step: Step[Any, Any, Any] | None = None  # None for a check that plans nothing (the tenant check)
    mode_chosen: bool = False  # the preflight picks apply or guide from the granted permissions; the team may force one
    waits: tuple[WaitSpec, ...] = ()

    @property
    def line(self) -> Line:
        return Line(self.name, self.label, self.title, self.guide_step)

    @property
    def guide_wait(self) -> WaitSpec | None:
        """The wait on the step's own line (admin consent, guide mode), if it has one."""
        return next((w for w in self.waits if w.name == self.name), None)

    @property
    def milestones(self) -> tuple[WaitSpec, ...]:
        """The waits with a checklist line of their own, in order."""
        return tuple(w for w in self.waits if w.name != self.name)


class CatalogueError(TypeError):
    """The catalogue contradicts itself (a developer's mistake, found when it is built)."""


class Catalogue:
    """The steps in the guide's order, with lookups by name; checked once when built."""

    def __init__(self, steps: Sequence[StepSpec]) -> None:
        self.steps = tuple(steps)
        self._steps = {s.name: s for s in self.steps}
        self._waits = {w.name: (w, s) for s in self.steps for w in s.waits}
        lines = [line.name for line in self.lines()]
        if len(self._steps) != len(self.steps) or len(set(lines)) != len(lines):
            raise CatalogueError(f"a step or milestone is declared twice: {lines}")
        if len(self._waits) != sum(len(s.waits) for s in self.steps):
            raise CatalogueError("two waits mark the same checklist line")
        for wait, spec in self._waits.values():
            if wait.name != spec.name and not (wait.label and wait.title):
                raise CatalogueError(f"{spec.name}: the milestone {wait.name} needs a label and a title")
        for spec in self.steps:
            if spec.mode_chosen and (spec.step is None or spec.permissions is None):
                raise CatalogueError(f"{spec.name}: a step whose mode is chosen needs a step and its permissions per mode")
            if spec.waits and spec.step is None:
                raise CatalogueError(f"{spec.name}: a step that waits needs a step to check with")

    def __iter__(self) -> Iterator[StepSpec]:
        return iter(self.steps)

    def step(self, name: StepName) -> StepSpec:
        return self._steps[name]

    def wait(self, name: StepName) -> WaitSpec:
        return self._waits[name][0]

    def step_of(self, wait: StepName) -> StepSpec:
        """The step whose wait marks the line ``wait``."""
        return self._waits[wait][1]

    def check_of(self, wait: StepName) -> Step[Any, Any, Any]:
        """What the wait ``wait`` checks with: its step's observe → plan → apply → verify."""
        step = self.step_of(wait).step
        assert step is not None  # a step that waits has one: checked when built
        return step

    def lines(self) -> list[Line]:
        """Every line of the checklist: each step, then its milestones."""
        return [line for s in self.steps for line in (s.line, *(self._milestone_line(w, s) for w in s.milestones))]

    @staticmethod
    def _milestone_line(wait: WaitSpec, spec: StepSpec) -> Line:
        return Line(wait.name, wait.label or wait.name, wait.title or wait.name, spec.guide_step)

    def waits(self) -> list[WaitSpec]:
        return [w for s in self.steps for w in s.waits]

    def milestones(self) -> list[WaitSpec]:
        """The waits after every step is done, in the guide's order (auditing in effect … first alerts)."""
        return [w for s in self.steps for w in s.milestones]

    def customer_waits(self) -> list[WaitSpec]:
        """The waits only the customer's admin can end."""
        return [w for w in self.waits() if w.on_customer]

    def planned(self) -> list[tuple[StepSpec, Step[Any, Any, Any]]]:
        """The steps that observe and plan (all but the tenant check), each with its step."""
        return [(s, s.step) for s in self.steps if s.step is not None]

    def with_modes(self) -> list[StepSpec]:
        """The steps whose mode the preflight chooses."""
        return [s for s in self.steps if s.mode_chosen]

    def permission_table(self) -> dict[StepName, StepPermissions]:
        """The application permissions each step needs, per mode (the README's table)."""
        return {s.name: s.permissions for s in self.steps if s.permissions is not None}

    def requested_permissions(self) -> list[str]:
        """Every permission the provider's app should request (its required resource access)."""
        return requested_permissions(self.permission_table().values())

    def read_permissions(self) -> list[str]:
        """What every step needs at least, to read (guide and plan mode): what admin consent must grant.

        Write permissions are optional: the preflight runs a step in apply mode where they were
        granted and in guide mode where not, so a read-only app onboards in guide mode.
        """
        return requested_permissions(StepPermissions(read=p.read, apply=()) for p in self.permission_table().values())
