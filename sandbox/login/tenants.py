"""How the login service reads the ``{tenant}`` path segment: a GUID, a domain, or a keyword."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sandbox.core.world import Tenant, World
from sandbox.login import errors

_DOMAIN = re.compile(r"^(?=.{3,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.IGNORECASE)
KEYWORDS = ("common", "organizations", "consumers")


@dataclass(frozen=True)
class ResolvedTenant:
    """The tenant a request names: a customer tenant, or the provider's own."""

    tenant_id: str
    customer: Tenant | None

    @property
    def is_provider(self) -> bool:
        return self.customer is None


def resolve_tenant(world: World, ref: str) -> ResolvedTenant:
    """Resolve a path's tenant or raise the error Entra gives for that kind of bad identifier."""
    try:
        as_guid = str(uuid.UUID(ref))
    except ValueError:
        as_guid = None
    if as_guid == "00000000-0000-0000-0000-000000000000":
        raise errors.empty_guid_tenant(ref)
    if as_guid is None and not _DOMAIN.match(ref) and ref.lower() not in KEYWORDS:
        raise errors.tenant_identifier_invalid(ref)
    tenant = world.tenant(ref)
    if tenant is not None:
        return ResolvedTenant(tenant.id, tenant)
    if world.is_provider_tenant(ref):
        return ResolvedTenant(world.scenario.provider.tenant_id, None)
    raise errors.tenant_not_found(ref)
