"""Bearer-token checks for Graph: a valid token for Graph's audience whose ``roles`` allow the operation."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from sandbox.core.catalog import GRAPH
from sandbox.core.tokens import TokenError, bearer_token
from sandbox.core.world import Tenant, World
from sandbox.graph.errors import AuthorizationRequestDenied, InvalidAuthenticationToken, InvitationUnauthorized
from sandbox.graph.permissions import ACCEPTED

_TOKEN_MESSAGES = {
    "missing": "Access token is empty.",
    "malformed": "CompactToken parsing failed with error code: 80049217",
    "expired": "Lifetime validation failed, the token is expired.",
    "audience": "Access token validation failure. Invalid audience.",
    "signature": "Access token validation failure. Invalid signature.",
}


def authorize(world: World, request: Request, operation: str) -> dict[str, Any]:
    """Return the token's claims, or raise Graph's 401/403 exactly as a real call would get it."""
    request.state.operation = operation
    try:
        claims = world.signer.verify(bearer_token(request.headers.get("authorization")), GRAPH.audience)
    except TokenError as exc:
        raise InvalidAuthenticationToken(_TOKEN_MESSAGES[exc.kind]) from exc
    request.state.tenant_id = claims.get("tid")
    request.state.app_id = claims.get("appid")
    if not set(claims.get("roles") or ()) & set(ACCEPTED[operation]):
        # The invitation manager answers with its own code, not the directory's.
        raise InvitationUnauthorized() if operation == "create_invitation" else AuthorizationRequestDenied()
    return claims


def customer_tenant(world: World, claims: dict[str, Any]) -> Tenant:
    """The directory a token works in. The provider's own tenant holds no customer objects here."""
    tenant = world.tenant(str(claims.get("tid", "")))
    if tenant is None:
        raise AuthorizationRequestDenied("The sandbox emulates customer directories only; this token is for another tenant.")
    return tenant
