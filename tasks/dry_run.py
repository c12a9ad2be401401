"""The dry run for one tenant: every step's plan, read-only, in the order the flow runs them.

Each step runs in plan mode (observe and plan, never apply), so this is exactly what an onboarding
run would change now. Steps that need the admin's consent say so instead of planning.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from clients.errors import AppNotConsented
from core.catalogue import StepName
from core.errors import OnboardingError
from core.requests import BlockNames, TenantRequest
from core.results import Mode
from tasks.catalogue import CATALOGUE
from tasks.context import TenantCheck
from tasks.runtime import build_context
from tasks.step import run_step
from tasks.tenant import check_tenant


class PlannedStep(BaseModel):
    """One step of the dry run: what it would do and each change, or why it cannot be planned yet."""

    step: StepName
    action: str = Field(description="none, create, update, manual … or 'cannot plan'.")
    changes: list[str] = Field(default_factory=list)
    note: str = ""


class TenantPlan(BaseModel):
    tenant: TenantCheck
    steps: list[PlannedStep]


def plan_tenant(request: TenantRequest, blocks: BlockNames) -> TenantPlan:
    """Plan every step; raises only for the tenant itself (not found, name mismatch)."""
    ctx = build_context(request, blocks)  # one context: blocks loaded and tenant checked once for all steps
    tenant = check_tenant(ctx)
    steps = []
    for spec, step in CATALOGUE.planned():
        try:
            result = run_step(step, ctx, Mode.PLAN)
        except AppNotConsented:
            steps.append(PlannedStep(step=spec.name, action="cannot plan", note="needs the customer's admin consent first"))
            continue
        except OnboardingError as exc:
            steps.append(PlannedStep(step=spec.name, action="cannot plan", note=str(exc).splitlines()[0]))
            continue
        plan = result.plan
        steps.append(PlannedStep(step=spec.name, action=plan.action.value, changes=[str(c) for c in plan.changes], note="; ".join(plan.notes)))
    return TenantPlan(tenant=tenant, steps=steps)
