"""Token checks of the Management Activity API, in the order the service applies them.

A token that cannot be used at all (missing, expired, wrong audience, bad signature) gets the web
framework's 401. Then: the URL's tenant must be a GUID (AF20013) and equal the token's ``tid``
(AF20010), the token must carry ``ActivityFeed.Read`` (AF10001), and the tenant must exist (AF20011).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request

from sandbox.core.catalog import MANAGEMENT
from sandbox.core.tokens import TokenError, bearer_token
from sandbox.core.world import Tenant, World
from sandbox.management_activity.errors import AuthorizationDenied, PermissionMissing, TenantMismatch, TenantNotFound, TenantNotGuid

ACTIVITY_FEED_READ = "ActivityFeed.Read"


def authorize(world: World, request: Request, tenant_ref: str) -> tuple[Tenant, dict[str, Any]]:
    """The tenant and claims of a call, or the API's error for it."""
    try:
        claims = world.signer.verify(bearer_token(request.headers.get("authorization")), MANAGEMENT.audience)
    except TokenError as exc:
        raise AuthorizationDenied() from exc
    request.state.app_id = claims.get("appid")
    try:
        url_tenant = str(uuid.UUID(tenant_ref))
    except ValueError as exc:
        raise TenantNotGuid(tenant_ref) from exc
    request.state.tenant_id = url_tenant
    token_tenant = str(claims.get("tid", "")).lower()
    if url_tenant != token_tenant:
        raise TenantMismatch(tenant_ref, token_tenant)
    roles = list(claims.get("roles") or ())
    if ACTIVITY_FEED_READ not in roles:
        raise PermissionMissing(roles)
    tenant = world.tenant(url_tenant)
    if tenant is None:
        raise TenantNotFound(tenant_ref)
    return tenant, claims
