"""Guide step 2: the Microsoft 365 unified audit log.

The guide: check ``UnifiedAuditLogIngestionEnabled``; where it is off, turn it on
(``Set-AdminAuditLogConfig -UnifiedAuditLogIngestionEnabled $true``); the change can take up to 60
minutes to take effect. A dehydrated organization first needs ``Enable-OrganizationCustomization``.
The step then starts the Management Activity subscriptions the provider reads, which also proves
that auditing is in effect: until it is, the API refuses them.

Permissions (application):
    read (plan, guide): Exchange.ManageAsApp (Exchange Online) with the app in the Global Reader
        role; ActivityFeed.Read (Office 365 Management APIs)
    apply: the same, with the app in the Exchange Administrator role (the Audit Logs role)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from clients.errors import AuditLogOff, NoSubscription, Throttled
from core.catalogue import StepName, StepSpec, WaitPolicyName, WaitSpec
from core.permissions import StepPermissions
from core.results import Action, Change, Outcome, Plan
from tasks.context import TenantContext
from tasks.step import converged, guide_mode_wait, wait_for_state


class DesiredAudit(BaseModel):
    model_config = ConfigDict(frozen=True)

    ingestion_enabled: bool = Field(default=True, description="UnifiedAuditLogIngestionEnabled.")
    content_types: tuple[str, ...] = Field(description="Management Activity subscriptions that must be enabled.")


class ObservedAudit(BaseModel):
    ingestion_enabled: bool
    dehydrated: bool | None = Field(default=None, description="Read only when ingestion is off.")
    subscriptions: list[str] = Field(default_factory=list, description="Enabled content types.")
    in_effect: bool = Field(default=False, description="The Management Activity API accepts the tenant (auditing is active).")
    content_listed: bool = Field(default=False, description="Content can be listed for the enabled subscriptions.")


class UnifiedAuditLogStep:
    name = StepName.UNIFIED_AUDIT_LOG

    def desired(self, ctx: TenantContext) -> DesiredAudit:
        return DesiredAudit(content_types=tuple(ctx.settings.provider.management_content_types))

    def observe(self, ctx: TenantContext) -> ObservedAudit:
        enabled = ctx.exchange.get_admin_audit_log_config().unified_audit_log_ingestion_enabled
        dehydrated = None if enabled else ctx.exchange.get_organization_config().is_dehydrated
        subscriptions = [s.content_type for s in ctx.management.list_subscriptions() if s.status == "enabled"]
        content_listed = False
        if subscriptions:
            try:
                ctx.management.list_content(subscriptions[0])
                content_listed = True
            except (NoSubscription, AuditLogOff):
                pass  # not in effect yet
        return ObservedAudit(
            ingestion_enabled=enabled,
            dehydrated=dehydrated,
            subscriptions=sorted(subscriptions),
            in_effect=bool(subscriptions) and content_listed,
            content_listed=content_listed,
        )

    def plan(self, ctx: TenantContext, desired: DesiredAudit, observed: ObservedAudit) -> Plan:
        changes: list[Change] = []
        if observed.dehydrated:
            changes.append(Change(field="organization_customization", current="dehydrated", desired="enabled"))
        if observed.ingestion_enabled != desired.ingestion_enabled:
            changes.append(Change(field="UnifiedAuditLogIngestionEnabled", current=observed.ingestion_enabled, desired=True))
        missing = [t for t in desired.content_types if t not in observed.subscriptions]
        if missing:
            changes.append(Change(field="subscriptions", current=observed.subscriptions, desired=list(desired.content_types), by="provider"))
        return Plan(step=self.name, tenant_id=ctx.tenant_id, action=Action.UPDATE if changes else Action.NONE, changes=changes)

    def apply(self, ctx: TenantContext, desired: DesiredAudit, observed: ObservedAudit, plan: Plan) -> None:
        fields = {c.field for c in plan.changes}
        exchange = ctx.exchange
        if "organization_customization" in fields:
            exchange.enable_organization_customization()
        if "UnifiedAuditLogIngestionEnabled" in fields:
            exchange.set_unified_audit_log_ingestion(True)
        if "subscriptions" in fields or "UnifiedAuditLogIngestionEnabled" in fields:
            self._start_subscriptions(ctx, desired, observed)

    def _start_subscriptions(self, ctx: TenantContext, desired: DesiredAudit, observed: ObservedAudit) -> None:
        management = ctx.management
        for content_type in desired.content_types:
            if content_type in observed.subscriptions:
                continue
            try:
                management.start_subscription(content_type)
            except AuditLogOff:
                return  # not in effect yet: the next run starts them; settled() reports the wait

    def verify(self, ctx: TenantContext, desired: DesiredAudit) -> ObservedAudit:
        return wait_for_state(
            ctx,
            lambda: self.observe(ctx),
            lambda o: o.ingestion_enabled,
            what="UnifiedAuditLogIngestionEnabled",
            consecutive=1,
            differing=lambda o: [] if o.ingestion_enabled else ["UnifiedAuditLogIngestionEnabled"],
        )

    def settled(self, observed: ObservedAudit) -> tuple[Outcome, str | None]:
        if not observed.ingestion_enabled:
            return Outcome.ACTION_REQUIRED, "the unified audit log to be turned on"
        if not observed.in_effect:
            return Outcome.WAITING, "auditing to take effect (up to 60 minutes after it is turned on)"
        return Outcome.CONVERGED, None

    def instructions(self, ctx: TenantContext, desired: DesiredAudit, plan: Plan) -> str:
        fields = {c.field for c in plan.changes}
        steps = ["Connect to Exchange Online PowerShell as an admin with the Audit Logs role (Organization Management includes it)."]
        if "organization_customization" in fields:
            steps.append("Run: Enable-OrganizationCustomization")
        if "UnifiedAuditLogIngestionEnabled" in fields:
            steps.append("Run: Set-AdminAuditLogConfig -UnifiedAuditLogIngestionEnabled $true")
            steps.append("Or, in the Microsoft Purview portal, open Audit and choose 'Start recording user and admin activity'.")
            steps.append("The change can take up to 60 minutes to take effect; nothing else needs to wait for it.")
        return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))


def restart_silent_subscriptions(ctx: TenantContext) -> str:
    """Automatic retry when data does not flow: restart every enabled subscription that has delivered
    no content in the last 24 hours, and say what was done (a provider-side change, any mode)."""
    management = ctx.management
    wanted = ctx.settings.provider.management_content_types
    status = {s.content_type: s.status for s in management.list_subscriptions()}
    # A subscription of ours found stopped is one an earlier try stopped and could not start again.
    stopped = [t for t in wanted if status.get(t) == "disabled"]
    silent = [t for t in wanted if status.get(t) == "enabled" and not management.list_content(t)]
    if not silent and not stopped:
        return f"all {len(wanted)} Management Activity subscriptions deliver content; nothing restarted"
    ctx.before_write()
    for content_type in silent:
        management.stop_subscription(content_type)
    for content_type in silent:
        management.start_subscription(content_type)
    # A try that failed between a stop and its start left that one stopped: the task's retry
    # observes it here and starts it, so a restart never leaves a subscription stopped for good.
    # One restarted moments ago also reads stopped for 15 minutes; its start then answers 429.
    settling = []
    for content_type in stopped:
        try:
            management.start_subscription(content_type)
        except Throttled:
            settling.append(content_type)
    restarted = sorted({*stopped, *silent} - set(settling))
    found = f"restarted {len(restarted)} Management Activity subscription(s) that delivered nothing: {', '.join(restarted)}"
    return found + (f"; restarting already: {', '.join(sorted(settling))}" if settling else "")


ACTIVATION = WaitSpec(
    name=StepName.AUDIT_ACTIVATION,
    label="Auditing in effect",
    title="Auditing in effect (up to 60 minutes)",
    policy=WaitPolicyName.AUDIT_ACTIVATION,
    done=converged,
    waiting_for="auditing to take effect (up to 60 minutes)",
    stall_next_action="Check Get-AdminAuditLogConfig in the tenant; if it reads True, open a case with Microsoft support.",
    # Only starting the provider's subscriptions shows that auditing is in effect (the API refuses
    # them until then), and the resumer's pre-check writes nothing: each check is the run's own.
    prechecked=False,
)
SPEC = StepSpec(
    name=StepName.UNIFIED_AUDIT_LOG,
    label="Audit log enabled",
    title="Unified audit log enabled",
    guide_step=2,
    permissions=StepPermissions(
        read=("Exchange.ManageAsApp", "ActivityFeed.Read"),
        apply=("Exchange.ManageAsApp", "ActivityFeed.Read"),
        # Exchange Online reads the app's Entra role: Global Reader can read, only a write role can set.
        read_roles=("Global Reader",),
        apply_roles=("Exchange Administrator",),
    ),
    step=UnifiedAuditLogStep(),
    mode_chosen=True,
    waits=(
        guide_mode_wait(
            StepName.UNIFIED_AUDIT_LOG,
            customer_action="turn on the unified audit log",
            stall_next_action="Ask the customer's admin to turn on the unified audit log (instructions in the checklist).",
        ),
        ACTIVATION,
    ),
)
