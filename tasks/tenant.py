"""Before anything changes: is this the tenant the team means?

OIDC discovery (no consent needed) proves the tenant exists in this cloud and gives its GUID;
once the app is consented, ``GET /organization`` gives the display name, which must match the
organization name the team typed. A mismatch stops the run before any change.

Permissions: Organization.Read.All (Graph, application) for the name check.
"""

from __future__ import annotations

import re
import uuid

import requests
from pydantic import BaseModel, Field

from clients.errors import ApiConnectionError, AppNotConsented, TenantNameMismatch, TenantNotFound
from clients.http import VerifiedSession
from tasks.context import TenantContext


class TenantCheck(BaseModel):
    """What is known of the tenant: always its id; its name once the app can read it."""

    tenant_id: str
    display_name: str | None = Field(default=None, description="Entra's organization name, once readable.")
    initial_domain: str | None = None
    name_verified: bool = Field(default=False, description="The typed name matched the tenant's display name.")


def _normalise(name: str) -> str:
    return re.sub(r"\s+", " ", name).strip().casefold()


def discover_tenant(ctx: TenantContext) -> str:
    """The tenant's GUID from OIDC discovery; :class:`TenantNotFound` when the cloud does not know it."""
    url = f"{ctx.endpoints.login}/{ctx.tenant_id}/v2.0/.well-known/openid-configuration"
    try:
        response = VerifiedSession(ctx.settings.ca_bundle).get(url, timeout=ctx.settings.timing.http_timeout_s)
    except requests.RequestException as exc:
        raise ApiConnectionError(f"login: cannot reach {ctx.endpoints.login}: {type(exc).__name__}") from None
    if 400 <= response.status_code < 500:
        codes = response.json().get("error_codes", []) if response.headers.get("content-type", "").startswith("application/json") else []
        raise TenantNotFound(f"Tenant {ctx.tenant_id} does not exist in the {ctx.settings.cloud.value} cloud (AADSTS{codes[0] if codes else '?'}).")
    response.raise_for_status()
    token_endpoint = response.json()["token_endpoint"]
    return token_endpoint.split("/")[3]


def check_tenant(ctx: TenantContext) -> TenantCheck:
    """Validate the tenant id, and the organization name once the app is consented.

    Raises:
        TenantNotFound: the id is not a GUID or no such tenant exists in this cloud.
        TenantNameMismatch: the tenant's display name differs from the organization name given.
    """
    try:
        uuid.UUID(ctx.tenant_id)
    except ValueError:
        raise TenantNotFound(f"{ctx.tenant_id!r} is not a Directory (tenant) ID: expected a GUID.") from None
    discovered = discover_tenant(ctx)
    if discovered.lower() != ctx.tenant_id.lower():
        raise TenantNotFound(f"Tenant {ctx.tenant_id} resolved to another tenant ({discovered}).")
    try:
        organization = ctx.graph.get_organization()
    except AppNotConsented:
        return TenantCheck(tenant_id=discovered)
    if ctx.organization_name and _normalise(organization.display_name) != _normalise(ctx.organization_name):
        raise TenantNameMismatch(
            f"Tenant {ctx.tenant_id} is named {organization.display_name!r} in Entra, not {ctx.organization_name!r}."
        )
    ctx.extra["initial_domain"] = organization.initial_domain
    return TenantCheck(
        tenant_id=organization.id,
        display_name=organization.display_name,
        initial_domain=organization.initial_domain,
        name_verified=bool(ctx.organization_name),
    )
