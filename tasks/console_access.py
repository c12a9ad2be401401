"""Guide step 1a: console access for the provider's SOC.

The guide: invite ``<customer's provider-org GUID>@soc.expel.io`` as a guest named "Expel SOC" and
give it the Global Reader role, so that analysts can investigate in the customer's consoles.

Permissions (application, Microsoft Graph):
    read (plan, guide): User.Read.All, RoleManagement.Read.Directory
    apply: User.Invite.All, RoleManagement.ReadWrite.Directory

The guest's identity is its address: before inviting, the step looks it up by mail, otherMails
(an address that collided with a contact lands there), proxyAddresses and the guest UPN, and adopts
what it finds. A second run changes nothing; a crash between invite and role assignment is
finished by the next run without a second guest or assignment.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from clients.errors import Conflict, NotFound, RoleAlreadyAssigned
from clients.graph import User
from core.catalogue import StepName, StepSpec
from core.permissions import StepPermissions
from core.results import Action, Change, Outcome, Plan
from tasks.context import TenantContext
from tasks.step import guide_mode_wait, retry_until_replicated, wait_for_state


class DesiredConsoleAccess(BaseModel):
    """The SOC guest and its role, from settings."""

    model_config = ConfigDict(frozen=True)

    email: str = Field(description="The SOC guest's address.")
    display_name: str = Field(description="Display name of the guest.")
    role_template_id: str = Field(description="Directory role the guest must hold, tenant-wide.")
    role_name: str = Field(description="That role's name, for people.")


class ObservedConsoleAccess(BaseModel):
    """What the tenant shows of the SOC guest."""

    guest_id: str | None = Field(default=None, description="Object id of the guest, when found.")
    user_principal_name: str | None = None
    invitation_state: str | None = Field(default=None, description="PendingAcceptance or Accepted.")
    has_role: bool = Field(default=False, description="Whether the guest holds the role tenant-wide.")
    duplicates: list[str] = Field(default_factory=list, description="Other users with the same address (left alone).")

    @property
    def exists(self) -> bool:
        return self.guest_id is not None


class ConsoleAccessStep:
    name = StepName.CONSOLE_ACCESS

    def desired(self, ctx: TenantContext) -> DesiredConsoleAccess:
        provider = ctx.settings.provider
        return DesiredConsoleAccess(
            email=ctx.soc_guest_email,
            display_name=provider.soc_guest_display_name,
            role_template_id=provider.guest_role_template_id,
            role_name=provider.guest_role_name,
        )

    def _find_guest(self, ctx: TenantContext, email: str) -> list[User]:
        return ctx.graph.find_users_by_address(email, ctx.initial_domain)

    def _observe_user(self, ctx: TenantContext, desired: DesiredConsoleAccess, users: list[User]) -> ObservedConsoleAccess:
        if not users:
            return ObservedConsoleAccess()
        # Prefer a guest that already holds the role; report the others instead of touching them.
        ranked = sorted(users, key=lambda u: (u.user_type != "Guest", u.id))
        with_role = [u for u in ranked if self._holds_role(ctx, desired, u.id)]
        chosen = with_role[0] if with_role else ranked[0]
        return ObservedConsoleAccess(
            guest_id=chosen.id,
            user_principal_name=chosen.user_principal_name,
            invitation_state=chosen.external_user_state,
            has_role=bool(with_role),
            duplicates=[u.id for u in ranked if u.id != chosen.id],
        )

    def _holds_role(self, ctx: TenantContext, desired: DesiredConsoleAccess, principal_id: str) -> bool:
        return any(
            a.role_definition_id == desired.role_template_id and a.directory_scope_id == "/"
            for a in ctx.graph.list_role_assignments(principal_id)
        )

    def observe(self, ctx: TenantContext) -> ObservedConsoleAccess:
        desired = self.desired(ctx)
        return self._observe_user(ctx, desired, self._find_guest(ctx, desired.email))

    def plan(self, ctx: TenantContext, desired: DesiredConsoleAccess, observed: ObservedConsoleAccess) -> Plan:
        changes: list[Change] = []
        if not observed.exists:
            changes.append(Change(field="soc_guest", current=None, desired=desired.email))
        if not observed.has_role:
            changes.append(Change(field="guest_role", current=None, desired=desired.role_name))
        action = Action.NONE if not changes else (Action.CREATE if not observed.exists else Action.UPDATE)
        notes = [f"{len(observed.duplicates)} other user(s) share the address and are left alone"] if observed.duplicates else []
        return Plan(step=self.name, tenant_id=ctx.tenant_id, action=action, changes=changes, notes=notes)

    def apply(self, ctx: TenantContext, desired: DesiredConsoleAccess, observed: ObservedConsoleAccess, plan: Plan) -> None:
        guest_id = observed.guest_id
        if guest_id is None:
            provider = ctx.settings.provider
            invitation = ctx.graph.create_invitation(
                desired.email, desired.display_name, provider.invite_redirect_url, provider.send_invitation_message
            )
            guest_id = invitation.invited_user_id
            # The new guest can be invisible to reads for a while; wait until lookups agree on it.
            wait_for_state(
                ctx,
                lambda: [u.id for u in self._find_guest(ctx, desired.email)],
                lambda ids: guest_id in ids,
                what=f"invited guest {desired.email}",
                consecutive=1,
            )
        if not observed.has_role:
            principal = guest_id

            def assign() -> None:
                if self._holds_role(ctx, desired, principal):
                    return
                try:
                    ctx.graph.create_role_assignment(desired.role_template_id, principal)
                except (Conflict, RoleAlreadyAssigned):
                    return  # assigned meanwhile (or by a crashed run whose assignment has not replicated)

            retry_until_replicated(ctx, assign, retry_on=(NotFound,), what=f"{desired.role_name} for the SOC guest")

    def verify(self, ctx: TenantContext, desired: DesiredConsoleAccess) -> ObservedConsoleAccess:
        return wait_for_state(
            ctx,
            lambda: self.observe(ctx),
            lambda o: o.exists and o.has_role,
            what="console access",
            differing=lambda o: [f for f, ok in (("soc_guest", o.exists), ("guest_role", o.has_role)) if not ok],
        )

    def settled(self, observed: ObservedConsoleAccess) -> tuple[Outcome, str | None]:
        return Outcome.CONVERGED, None

    def instructions(self, ctx: TenantContext, desired: DesiredConsoleAccess, plan: Plan) -> str:
        steps = ["Sign in to the Microsoft Entra admin center as a Global Administrator or User Administrator."]
        fields = {c.field for c in plan.changes}
        if "soc_guest" in fields:
            steps += [
                "Go to Entra ID > Users > All users, then New user > Invite external user.",
                f"On Basics, enter the email {desired.email} and the display name {desired.display_name!r}.",
                f"On Assignments, choose Add role and select {desired.role_name}.",
                "Choose Review + invite, then Invite.",
            ]
        elif "guest_role" in fields:
            steps += [
                f"Go to Entra ID > Roles & admins, open {desired.role_name} and choose Add assignments.",
                f"Select the guest {desired.email} and assign the role for the whole directory.",
            ]
        return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))


SPEC = StepSpec(
    name=StepName.CONSOLE_ACCESS,
    label="SOC guest, Global Reader",
    title="Console access: SOC guest with Global Reader",
    guide_step=1,
    permissions=StepPermissions(
        read=("User.Read.All", "RoleManagement.Read.Directory"),
        apply=("User.Read.All", "User.Invite.All", "RoleManagement.ReadWrite.Directory"),
    ),
    step=ConsoleAccessStep(),
    mode_chosen=True,
    waits=(guide_mode_wait(
        StepName.CONSOLE_ACCESS,
        customer_action="invite the provider's SOC account and give it the Global Reader role",
        stall_next_action="Ask the customer's admin to invite the SOC guest and assign Global Reader (instructions in the checklist).",
    ),),
)
