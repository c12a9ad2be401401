"""Guide step 1b: cross-tenant access for the provider's tenant.

The guide: add the provider's tenant as an organization in cross-tenant access settings, then on
its inbound trust settings trust MFA, compliant devices and hybrid-joined devices, and turn on
automatic redemption of invitations. Every other setting of the partner entry is left alone.

Permissions (application, Microsoft Graph):
    read (plan, guide): Policy.Read.All
    apply: Policy.ReadWrite.CrossTenantAccess
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clients.errors import Conflict, NotFound
from core.catalogue import StepName, StepSpec
from core.permissions import StepPermissions
from core.results import Action, Outcome, Plan
from tasks.context import TenantContext
from tasks.step import diff, guide_mode_wait, retry_until_replicated, wait_for_state

TRUST_FIELDS = {
    "isMfaAccepted": "trust_mfa",
    "isCompliantDeviceAccepted": "trust_compliant_devices",
    "isHybridAzureADJoinedDeviceAccepted": "trust_hybrid_joined_devices",
}
_LABELS = {
    "isMfaAccepted": "Trust multifactor authentication from Microsoft Entra tenants",
    "isCompliantDeviceAccepted": "Trust compliant devices",
    "isHybridAzureADJoinedDeviceAccepted": "Trust Microsoft Entra hybrid joined devices",
    "inboundAllowed": "Automatically redeem invitations with the tenant",
}


class DesiredPartner(BaseModel):
    model_config = ConfigDict(frozen=True)

    partner_tenant_id: str = Field(description="The provider's tenant id.")
    settings: dict[str, bool] = Field(description="The four flags by Graph member name.")


class ObservedPartner(BaseModel):
    exists: bool
    settings: dict[str, bool | None] = Field(default_factory=dict, description="The same four flags as the tenant shows them.")
    automatic_outbound: bool | None = Field(default=None, description="Kept as it is when patching.")


class CrossTenantAccessStep:
    name = StepName.CROSS_TENANT_ACCESS

    def desired(self, ctx: TenantContext) -> DesiredPartner:
        provider = ctx.settings.provider
        flags = {member: bool(getattr(provider, setting)) for member, setting in TRUST_FIELDS.items()}
        flags["inboundAllowed"] = provider.automatic_redemption
        return DesiredPartner(partner_tenant_id=provider.tenant_id, settings=flags)

    def observe(self, ctx: TenantContext) -> ObservedPartner:
        try:
            partner = ctx.graph.get_partner(ctx.settings.provider.tenant_id)
        except NotFound:
            return ObservedPartner(exists=False)
        trust = partner.inbound_trust or {}
        consent = partner.automatic_user_consent_settings or {}
        settings: dict[str, bool | None] = {member: trust.get(member) for member in TRUST_FIELDS}
        settings["inboundAllowed"] = consent.get("inboundAllowed")
        return ObservedPartner(exists=True, settings=settings, automatic_outbound=consent.get("outboundAllowed"))

    def plan(self, ctx: TenantContext, desired: DesiredPartner, observed: ObservedPartner) -> Plan:
        changes = diff(desired.settings, observed.settings if observed.exists else {})
        if not observed.exists:
            return Plan(step=self.name, tenant_id=ctx.tenant_id, action=Action.CREATE, changes=changes,
                        notes=[f"add partner {desired.partner_tenant_id}"])
        return Plan(step=self.name, tenant_id=ctx.tenant_id, action=Action.UPDATE if changes else Action.NONE, changes=changes)

    def _body(self, desired: DesiredPartner, observed: ObservedPartner) -> dict[str, Any]:
        # Both complex properties are sent whole, with current values kept for members we do not
        # manage, so the result is the same whether Graph merges or replaces them.
        trust = {member: desired.settings[member] for member in TRUST_FIELDS}
        consent = {"inboundAllowed": desired.settings["inboundAllowed"], "outboundAllowed": observed.automatic_outbound}
        return {"inboundTrust": trust, "automaticUserConsentSettings": consent}

    def apply(self, ctx: TenantContext, desired: DesiredPartner, observed: ObservedPartner, plan: Plan) -> None:
        body = self._body(desired, observed)
        if not observed.exists:
            try:
                ctx.graph.create_partner({"tenantId": desired.partner_tenant_id, **body})
                return
            except Conflict:
                pass  # created meanwhile (or by a crashed run whose entry has not replicated): patch it
        retry_until_replicated(
            ctx, lambda: ctx.graph.update_partner(desired.partner_tenant_id, body), retry_on=(NotFound,), what="patch the partner entry"
        )

    def verify(self, ctx: TenantContext, desired: DesiredPartner) -> ObservedPartner:
        return wait_for_state(
            ctx,
            lambda: self.observe(ctx),
            lambda o: o.exists and not diff(desired.settings, o.settings),
            what=f"cross-tenant partner {desired.partner_tenant_id}",
            differing=lambda o: [c.field for c in diff(desired.settings, o.settings)] if o.exists else ["partner"],
        )

    def settled(self, observed: ObservedPartner) -> tuple[Outcome, str | None]:
        return Outcome.CONVERGED, None

    def instructions(self, ctx: TenantContext, desired: DesiredPartner, plan: Plan) -> str:
        provider = ctx.settings.provider
        steps = ["In the Microsoft Entra admin center, go to Entra ID > External Identities > Cross-tenant access settings, tab Organizational settings."]
        if plan.action == Action.CREATE:
            steps.append(f"Choose Add organization, enter the tenant ID {desired.partner_tenant_id}, select {provider.display_name} and choose Add.")
        steps.append(f"On the {provider.display_name} row choose Inbound access, open the Trust settings tab and choose Customize settings.")
        for change in plan.changes:
            steps.append(f"Turn {'on' if change.desired else 'off'}: {_LABELS[change.field]}.")
        steps.append("Choose Save.")
        return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))


SPEC = StepSpec(
    name=StepName.CROSS_TENANT_ACCESS,
    label="Cross-tenant trust",
    title="Cross-tenant access: provider trusted, automatic redemption",
    guide_step=1,
    permissions=StepPermissions(read=("Policy.Read.All",), apply=("Policy.ReadWrite.CrossTenantAccess",)),
    step=CrossTenantAccessStep(),
    mode_chosen=True,
    waits=(guide_mode_wait(
        StepName.CROSS_TENANT_ACCESS,
        customer_action="add the provider as a cross-tenant partner",
        stall_next_action="Ask the customer's admin to add the provider's cross-tenant partner entry (instructions in the checklist).",
    ),),
)
