"""The dry run for one tenant: every step's plan, read-only, in the order the flow runs them.

Each step runs in plan mode (observe and plan, never apply), so this is exactly what an onboarding
run would change now. Steps that need the admin's consent say so instead of planning.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from clients.errors import AppNotConsented, OnboardingError
from tasks.prefect_tasks import STEPS
from tasks.runtime import BlockNames, TenantRequest, build_context
from tasks.step import Mode, run_step
from tasks.tenant import TenantCheck, check_tenant

PLANNED_STEPS = ("admin_consent", "console_access", "cross_tenant_access", "unified_audit_log", "security_device")


class PlannedStep(BaseModel):
    """One step of the dry run: what it would do and each change, or why it cannot be planned yet."""

    step: str
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
    for name in PLANNED_STEPS:
        try:
            result = run_step(STEPS[name](), ctx, Mode.PLAN)
        except AppNotConsented:
            steps.append(PlannedStep(step=name, action="cannot plan", note="needs the customer's admin consent first"))
            continue
        except OnboardingError as exc:
            steps.append(PlannedStep(step=name, action="cannot plan", note=str(exc).splitlines()[0]))
            continue
        plan = result.plan
        steps.append(PlannedStep(step=name, action=plan.action.value, changes=[str(c) for c in plan.changes], note="; ".join(plan.notes)))
    return TenantPlan(tenant=tenant, steps=steps)
