"""Preflight: which mode each customer-side step can run in, from the permissions actually granted.

``apply`` where the app holds the write permissions, ``guide`` where it can at least read (the
customer's admin makes the change, the step verifies it), and ``blocked`` where it cannot even
read, naming what is missing. The team can force ``guide`` or ``plan`` per step; a forced
``apply`` that the permissions do not allow is refused here, before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field

from clients.errors import AppNotConsented
from core.catalogue import StepName
from core.permissions import DIRECTORY_ROLE_IDS, PERMISSION_RESOURCE, Resource, effective
from core.results import Mode
from tasks.catalogue import CATALOGUE
from tasks.context import TenantContext
from tasks.errors import ModeNotPossible


class StepMode(BaseModel):
    """The mode chosen for one step, and why."""

    step: StepName
    mode: Mode | Literal["blocked"]
    missing_for_apply: list[str] = Field(default_factory=list)
    missing_for_read: list[str] = Field(default_factory=list)
    reason: str


def granted_permissions(ctx: TenantContext) -> set[str]:
    """Every application permission the tenant's tokens carry, for the resources onboarding uses."""
    audiences = {
        Resource.GRAPH: ctx.endpoints.graph_audience,
        Resource.EXCHANGE: ctx.endpoints.exchange_audience,
        Resource.MANAGEMENT: ctx.endpoints.management_audience,
    }
    held: set[str] = set()
    for resource in sorted(set(PERMISSION_RESOURCE.values())):
        held |= set(ctx.tokens.roles(ctx.tenant_id, audiences[resource], fresh=True))
    # Exchange Online authorises cmdlets by the app's Entra role, which its tokens carry as wids.
    wids = ctx.tokens.directory_role_ids(ctx.tenant_id, audiences[Resource.EXCHANGE])
    held |= {f"role:{DIRECTORY_ROLE_IDS[w]}" for w in wids if w in DIRECTORY_ROLE_IDS}
    return held


def choose_modes(granted: set[str], forced: Mapping[str, Mode] | None = None) -> dict[StepName, StepMode]:
    """Pick a mode per customer-side step; ``forced`` overrides (guide and plan always allowed)."""
    forced = forced or {}
    granted = effective(granted)
    choices: dict[StepName, StepMode] = {}
    for spec in CATALOGUE.with_modes():
        step, needs = spec.name, spec.permissions
        assert needs is not None, f"{step} chooses a mode, so it declares its permissions"
        missing_apply = [p for p in (*needs.apply, *(f"role:{r}" for r in needs.apply_roles)) if p not in granted]
        missing_read = [p for p in (*needs.read, *(f"role:{r}" for r in needs.read_roles)) if p not in granted]
        wanted = forced.get(step)
        if wanted == Mode.APPLY and missing_apply:
            raise ModeNotPossible(f"{step} cannot run in apply mode: the app lacks {', '.join(missing_apply)}.")
        if wanted is not None:
            mode: Mode | Literal["blocked"] = wanted
            reason = f"{wanted.value} mode chosen by the onboarding team"
        elif not missing_apply:
            mode, reason = Mode.APPLY, "the app holds every permission to make the change"
        elif not missing_read:
            mode, reason = Mode.GUIDE, f"the app can read but lacks {', '.join(missing_apply)}: the customer's admin makes the change"
        else:
            mode, reason = "blocked", f"the app cannot even read: {', '.join(missing_read)} missing"
        choices[step] = StepMode(step=step, mode=mode, missing_for_apply=missing_apply, missing_for_read=missing_read, reason=reason)
    return choices


def preflight(ctx: TenantContext, forced: Mapping[str, Mode] | None = None) -> dict[StepName, StepMode]:
    """Read the granted permissions of the tenant and choose each step's mode."""
    try:
        granted = granted_permissions(ctx)
    except AppNotConsented:
        granted = set()
    return choose_modes(granted, forced)
