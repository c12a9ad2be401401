"""Who may run which cmdlet: Exchange Online's app-only rules (reference §7).

An app needs two things: the ``Exchange.ManageAsApp`` application permission (401 without it) and
a supported Microsoft Entra role on its service principal, which Exchange reads from the token's
``wids`` claim (403 without one). The role then decides which cmdlets exist for the caller.

Roles per cmdlet (the sandbox's choice where Microsoft lists none; Exchange RBAC decides for real):

- ``Get-OrganizationConfig``: any supported role (every one of them can view org configuration).
- ``Get-AdminAuditLogConfig``: roles that include audit-log viewing: Global Administrator,
  Exchange Administrator, Compliance Administrator, Security Administrator, Global Reader,
  Security Reader.
- ``Set-AdminAuditLogConfig`` and ``Enable-OrganizationCustomization``: write roles only: Exchange
  Administrator, Global Administrator, Compliance Administrator (the one the guide's customers
  most often hand out for auditing). Global Reader and Security Reader are read-only.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request

from sandbox.core.catalog import DIRECTORY_ROLES, EXCHANGE
from sandbox.core.tokens import TokenError, bearer_token
from sandbox.core.world import Tenant, World
from sandbox.exchange.errors import NoSupportedRole, NotAllowedToCall, TenantNotFound, Unauthorized

MANAGE_AS_APP = "Exchange.ManageAsApp"

# Two supported roles the shared catalog does not list (template ids from Entra's permissions reference).
EXCHANGE_RECIPIENT_ADMINISTRATOR = "31392ffb-586c-42d1-9346-e59415a2cc4e"
HELPDESK_ADMINISTRATOR = "729827e3-9c14-49f7-bb1b-9608f156bbb8"

_WRITE = frozenset(DIRECTORY_ROLES[r] for r in ("Exchange Administrator", "Global Administrator", "Compliance Administrator"))
_AUDIT_READ = _WRITE | frozenset(DIRECTORY_ROLES[r] for r in ("Security Administrator", "Global Reader", "Security Reader"))
SUPPORTED_ROLES = _AUDIT_READ | {EXCHANGE_RECIPIENT_ADMINISTRATOR, HELPDESK_ADMINISTRATOR}

CMDLET_ROLES: dict[str, frozenset[str]] = {
    "Get-OrganizationConfig": SUPPORTED_ROLES,
    "Get-AdminAuditLogConfig": _AUDIT_READ,
    "Set-AdminAuditLogConfig": _WRITE,
    "Enable-OrganizationCustomization": _WRITE,
}

_TOKEN_REASONS = {
    "missing": (2000000, "The request has no bearer token."),
    "malformed": (2000001, "The token is malformed."),
    "expired": (2000001, "The token has expired."),
    "audience": (2000003, "The audience claim value is invalid for current resource."),
    "signature": (2000001, "The token signature is invalid."),
}


def _url_tenant_id(world: World, tenant_ref: str) -> str | None:
    """The GUID the URL names (directly, or through an initial domain the sandbox knows)."""
    tenant = world.tenant(tenant_ref)
    if tenant is not None:
        return tenant.id
    try:
        return str(uuid.UUID(tenant_ref))
    except ValueError:
        return None


def authorize(world: World, request: Request, tenant_ref: str) -> tuple[Tenant, dict[str, Any]]:
    """The tenant and token claims of a call, or Exchange's 401/403/404 as a real call gets it."""
    try:
        claims = world.signer.verify(bearer_token(request.headers.get("authorization")), EXCHANGE.audience)
    except TokenError as exc:
        code, reason = _TOKEN_REASONS[exc.kind]
        raise Unauthorized(reason, code, "invalid_resource" if exc.kind == "audience" else "invalid_token") from exc
    token_tenant = str(claims.get("tid", "")).lower()
    request.state.app_id = claims.get("appid")
    url_tenant = _url_tenant_id(world, tenant_ref)
    if url_tenant is None:
        raise TenantNotFound(tenant_ref)
    request.state.tenant_id = url_tenant
    if url_tenant != token_tenant:
        raise Unauthorized(f"The token was issued for tenant {token_tenant}, not for {tenant_ref}.", 2000010, "invalid_token")
    if MANAGE_AS_APP not in (claims.get("roles") or ()):
        raise Unauthorized("The token contains no permissions, or permissions can not be understood.", 2000008, "invalid_grant")
    if not set(claims.get("wids") or ()) & SUPPORTED_ROLES:
        raise NoSupportedRole()
    tenant = world.tenant(url_tenant)
    if tenant is None:
        raise TenantNotFound(tenant_ref)
    return tenant, claims


def check_cmdlet_allowed(claims: dict[str, Any], cmdlet: str) -> None:
    """Raise the 403 a caller gets for a cmdlet none of its roles includes."""
    if not set(claims.get("wids") or ()) & CMDLET_ROLES[cmdlet]:
        raise NotAllowedToCall(cmdlet)
