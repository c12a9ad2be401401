"""What one run of a step is and returns: its mode, its plan of changes and its result.

These models cross every layer (a step returns them, the flow waits on them, the resumer checks
them, the report and the dry run show them), so they live at the bottom with no behaviour.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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
    # When it was seen: a re-executed run decides its waits on this, not on the time of the replay.
    checked_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
