"""Before anything changes: is this the tenant the team means?

OIDC discovery (no consent needed) proves the tenant exists in this cloud and gives its GUID;
once the app is consented, ``GET /organization`` gives the display name, which must match the
organization name the team typed. A mismatch stops the run before any change.

Permissions: Organization.Read.All (Graph, application) for the name check.
"""

from __future__ import annotations

import re
import uuid

from clients.errors import AppNotConsented, TenantNotFound
from core.catalogue import StepName, StepSpec
from core.permissions import StepPermissions
from tasks.context import TenantCheck, TenantContext
from tasks.errors import TenantNameMismatch

SPEC = StepSpec(
    name=StepName.TENANT,
    label="Tenant confirmed",
    title="Tenant and organization name confirmed",
    guide_step=None,
    permissions=StepPermissions(read=("Organization.Read.All",), apply=("Organization.Read.All",)),
)


def _normalise(name: str) -> str:
    return re.sub(r"\s+", " ", name).strip().casefold()


def check_tenant(ctx: TenantContext) -> TenantCheck:
    """Validate the tenant id, and the organization name once the app is consented; kept on the context.

    Raises:
        TenantNotFound: the id is not a GUID or no such tenant exists in this cloud.
        TenantNameMismatch: the tenant's display name differs from the organization name given.
    """
    try:
        uuid.UUID(ctx.tenant_id)  # also keeps anything but a GUID out of the discovery URL
    except ValueError as exc:
        raise TenantNotFound(f"{ctx.tenant_id!r} is not a Directory (tenant) ID: expected a GUID.") from exc
    discovered = ctx.login.get_openid_configuration(ctx.tenant_id).tenant_id
    if discovered.lower() != ctx.tenant_id.lower():
        raise TenantNotFound(f"Tenant {ctx.tenant_id} resolved to another tenant ({discovered}).")
    try:
        organization = ctx.graph.get_organization()
    except AppNotConsented:
        ctx.tenant = TenantCheck(tenant_id=discovered)
        return ctx.tenant
    if ctx.organization_name and _normalise(organization.display_name) != _normalise(ctx.organization_name):
        raise TenantNameMismatch(
            f"Tenant {ctx.tenant_id} is named {organization.display_name!r} in Entra, not {ctx.organization_name!r}."
        )
    ctx.tenant = TenantCheck(
        tenant_id=organization.id,
        display_name=organization.display_name,
        initial_domain=organization.initial_domain,
        name_verified=bool(ctx.organization_name),
    )
    return ctx.tenant


def tenant_checked(ctx: TenantContext) -> TenantCheck:
    """The tenant check of this context, made once it can read the name; until then made every time."""
    with ctx.check_lock:  # parallel steps of one process share the context: one of them checks
        if ctx.tenant is not None and ctx.tenant.display_name is not None:
            return ctx.tenant
        return check_tenant(ctx)
