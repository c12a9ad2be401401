"""Application permissions and Entra roles: which resource grants each, and what each implies.

Each step declares what it needs per mode in its own module (``StepSpec.permissions``; ``guide``
and ``plan`` only read, ``apply`` also writes); the catalogue collects them into the README's
permission table, which a test keeps in step with the code.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Resource(StrEnum):
    GRAPH = "graph"
    EXCHANGE = "exchange"
    MANAGEMENT = "management"


PERMISSION_RESOURCE: dict[str, Resource] = {
    "Organization.Read.All": Resource.GRAPH,
    "Application.Read.All": Resource.GRAPH,
    "User.Read.All": Resource.GRAPH,
    "User.Invite.All": Resource.GRAPH,
    "RoleManagement.Read.Directory": Resource.GRAPH,
    "RoleManagement.ReadWrite.Directory": Resource.GRAPH,
    "Policy.Read.All": Resource.GRAPH,
    "Policy.ReadWrite.CrossTenantAccess": Resource.GRAPH,
    "Exchange.ManageAsApp": Resource.EXCHANGE,
    "ActivityFeed.Read": Resource.MANAGEMENT,
}


class StepPermissions(BaseModel):
    """Application permissions (and Entra roles of the app) a step needs to read, and to apply."""

    model_config = ConfigDict(frozen=True)

    read: tuple[str, ...]
    apply: tuple[str, ...]
    read_roles: tuple[str, ...] = ()
    apply_roles: tuple[str, ...] = ()


# Entra directory roles of the app, by template id (tokens list them in ``wids``). Preflight
# counts a role as the pseudo-permission "role:<name>".
DIRECTORY_ROLE_IDS: dict[str, str] = {
    "62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
    "29232cdf-9323-42fd-ade2-1d097af3e4de": "Exchange Administrator",
    "17315797-102d-40b4-93e0-432062caca18": "Compliance Administrator",
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451": "Global Reader",
    "5d6b6bb7-de71-4623-b4af-96380a352509": "Security Reader",
}

# A held permission that also grants what another one would, for the operations we call.
IMPLIES: dict[str, frozenset[str]] = {
    "role:Global Administrator": frozenset({"role:Exchange Administrator", "role:Global Reader"}),
    "role:Exchange Administrator": frozenset({"role:Global Reader"}),
    "role:Compliance Administrator": frozenset({"role:Exchange Administrator", "role:Global Reader"}),
    "role:Security Reader": frozenset({"role:Global Reader"}),
    "RoleManagement.ReadWrite.Directory": frozenset({"RoleManagement.Read.Directory"}),
    "Policy.ReadWrite.CrossTenantAccess": frozenset({"Policy.Read.All"}),  # enough to read partners
    "User.ReadWrite.All": frozenset({"User.Read.All"}),
    "Directory.Read.All": frozenset({"User.Read.All", "RoleManagement.Read.Directory", "Organization.Read.All"}),
}


def named_with_alternatives(permission: str) -> str:
    """``permission`` as a person grants it: with the broader permissions that also give it.

    An app registered for apply mode requests RoleManagement.ReadWrite.Directory, not its read
    counterpart; a message naming only the read one would send the customer's admin looking for a
    permission the app does not ask for.
    """
    broader = sorted(p for p, implied in IMPLIES.items() if permission in implied and not p.startswith("role:"))
    return f"{permission} (or {' or '.join(broader)})" if broader else permission


def effective(held: set[str] | frozenset[str]) -> set[str]:
    """The permissions ``held`` grants, counting what each implies."""
    result = set(held)
    for permission in held:
        result |= IMPLIES.get(permission, frozenset())
    return result


def requested_permissions(steps: Iterable[StepPermissions]) -> list[str]:
    """Every permission the provider's app should request for these steps (its required resource access)."""
    needs = list(steps)
    names = {p for n in needs for p in n.apply}
    names |= {p for n in needs for p in n.read if p not in effective(names)}
    return sorted(names, key=lambda p: (PERMISSION_RESOURCE[p].value, p))
