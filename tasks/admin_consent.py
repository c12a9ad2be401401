"""Guide step 3: API connectivity, i.e. the customer's admin consents to the provider's app.

Only the customer's Global Administrator can consent, so this step never applies anything: it
builds the admin-consent link, detects consent (a token can be issued in the tenant), and checks
that every required permission was granted, naming each one that is missing. It runs first in the
flow because every other API call needs it.

Permissions: none beyond consent itself; granted permissions are read from the tokens' ``roles``.
"""

from __future__ import annotations

from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from clients.errors import AppNotConsented
from core.catalogue import StepName, StepSpec, WaitPolicyName, WaitSpec
from core.permissions import PERMISSION_RESOURCE, Resource, StepPermissions, effective, named_with_alternatives
from core.results import Action, Change, Mode, Outcome, Plan, StepResult
from tasks.context import TenantContext
from tasks.errors import ConsentIncomplete
from tasks.step import converged, run_step


class DesiredConsent(BaseModel):
    model_config = ConfigDict(frozen=True)

    required: tuple[str, ...] = Field(description="Application permissions the onboarding needs in this tenant.")
    consent_url: str = Field(description="The admin-consent link for the customer's Global Administrator.")


class ObservedConsent(BaseModel):
    consented: bool = Field(description="The app has a service principal: tokens can be issued in the tenant.")
    granted: list[str] = Field(default_factory=list, description="Permissions the tenant's tokens carry.")
    missing: list[str] = Field(default_factory=list, description="Required permissions not (yet) granted.")


def admin_consent_url(ctx: TenantContext, client_id: str, state: str | None = None) -> str:
    """The v1 admin-consent link, which asks for every permission configured on the app."""
    params = {"client_id": client_id}
    if ctx.settings.provider.consent_redirect_uri:
        params["redirect_uri"] = ctx.settings.provider.consent_redirect_uri
    if state:
        params["state"] = state
    return f"{ctx.endpoints.login}/{ctx.tenant_id}/adminconsent?{urlencode(params)}"


class AdminConsentStep:
    name = StepName.ADMIN_CONSENT

    def desired(self, ctx: TenantContext) -> DesiredConsent:
        return DesiredConsent(required=ctx.required_permissions, consent_url=admin_consent_url(ctx, ctx.tokens.client_id, state=ctx.tenant_id))

    def observe(self, ctx: TenantContext) -> ObservedConsent:
        audiences = {
            Resource.GRAPH: ctx.endpoints.graph_audience,
            Resource.EXCHANGE: ctx.endpoints.exchange_audience,
            Resource.MANAGEMENT: ctx.endpoints.management_audience,
        }
        required = ctx.required_permissions
        needed = {PERMISSION_RESOURCE[p] for p in required}
        held: set[str] = set()
        try:
            ctx.tokens.forget_tokens(ctx.tenant_id)
            for resource in sorted(needed):
                held |= set(ctx.tokens.roles(ctx.tenant_id, audiences[resource]))
        except AppNotConsented:
            return ObservedConsent(consented=False, missing=list(required))
        granted = effective(held)
        return ObservedConsent(consented=True, granted=sorted(held), missing=[p for p in required if p not in granted])

    def plan(self, ctx: TenantContext, desired: DesiredConsent, observed: ObservedConsent) -> Plan:
        if not observed.consented:
            changes = [Change(field=self.name, current="not granted", desired="granted")]
        else:
            changes = [Change(field=f"permission:{p}", current="missing", desired="granted") for p in observed.missing]
        return Plan(step=self.name, tenant_id=ctx.tenant_id, action=Action.MANUAL if changes else Action.NONE, changes=changes)

    def apply(self, ctx: TenantContext, desired: DesiredConsent, observed: ObservedConsent, plan: Plan) -> None:
        raise NotImplementedError("admin consent is given by the customer's admin; run_step never applies a manual plan")

    def verify(self, ctx: TenantContext, desired: DesiredConsent) -> ObservedConsent:
        return self.observe(ctx)

    def settled(self, observed: ObservedConsent) -> tuple[Outcome, str | None]:
        return Outcome.CONVERGED, None

    def instructions(self, ctx: TenantContext, desired: DesiredConsent, plan: Plan) -> str:
        provider = ctx.settings.provider
        missing = [c.field.removeprefix("permission:") for c in plan.changes if c.field.startswith("permission:")]
        lines = [
            f"1. Sign in as a Global Administrator of {ctx.organization_name or ctx.tenant_id} and open this link:",
            f"   {desired.consent_url}",
            f"2. Review the permissions that {provider.display_name}'s app \"{provider.app_display_name}\" asks for, and choose Accept.",
            f"3. Afterwards the app is listed under Entra ID > Enterprise applications; its Permissions page should show: {', '.join(desired.required)}.",
        ]
        if missing:
            lines.insert(0, f"Consent was given, but these permissions are not granted yet: {', '.join(map(named_with_alternatives, missing))}.")
        return "\n".join(lines)


def consent_error(result: StepResult) -> AppNotConsented | ConsentIncomplete:
    """The error a person acts on for an admin-consent result that is not converged."""
    observed = ObservedConsent.model_validate(result.observed)
    if not observed.consented:
        return AppNotConsented(f"Tenant {result.tenant_id} has not consented to the provider's app yet.\n{result.instructions or ''}".rstrip())
    return ConsentIncomplete(
        f"Tenant {result.tenant_id} consented, but {len(observed.missing)} required permission(s) are not granted: "
        f"{', '.join(map(named_with_alternatives, observed.missing))}.",
        observed.missing,
    )


def require_consent(result: StepResult) -> None:
    """Raise the error a person acts on unless consent is complete.

    Raises:
        AppNotConsented: no consent at all yet.
        ConsentIncomplete: consent given, with the missing permissions named.
    """
    if result.outcome != Outcome.CONVERGED:
        raise consent_error(result)


def recheck_consent(ctx: TenantContext) -> str:
    """On a stalled device: an unhealthy device is most often a permission the admin withdrew; say what is granted."""
    found = run_step(STEP, ctx, Mode.APPLY)
    return "consent and every permission are still granted" if found.outcome == Outcome.CONVERGED else found.message


STEP = AdminConsentStep()
CONSENT = WaitSpec(
    name=StepName.ADMIN_CONSENT,
    policy=WaitPolicyName.ADMIN_CONSENT,
    done=converged,
    waiting_for="the customer's admin to grant consent",
    customer_action="grant admin consent to the provider's app",
    stall_next_action="Call the customer's contact: their Global Administrator has not granted consent (the link is in the checklist).",
    limit_error=consent_error,
)
SPEC = StepSpec(
    name=StepName.ADMIN_CONSENT,
    label="Admin consent",
    title="API connectivity: admin consent with every permission",
    guide_step=3,
    permissions=StepPermissions(read=(), apply=()),
    step=STEP,
    waits=(CONSENT,),
)
