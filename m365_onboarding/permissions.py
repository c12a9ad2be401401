"""The application permissions each step needs, per mode: the one place they are listed.

``guide`` and ``plan`` only read; ``apply`` also writes. The README's permission table is checked
against this module by a test, so the two cannot drift apart.
"""

from __future__ import annotations

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


STEP_PERMISSIONS: dict[str, StepPermissions] = {
    "tenant": StepPermissions(read=("Organization.Read.All",), apply=("Organization.Read.All",)),
    "admin_consent": StepPermissions(read=(), apply=()),
    "console_access": StepPermissions(
        read=("User.Read.All", "RoleManagement.Read.Directory"),
        apply=("User.Read.All", "User.Invite.All", "RoleManagement.ReadWrite.Directory"),
    ),
    "cross_tenant_access": StepPermissions(read=("Policy.Read.All",), apply=("Policy.ReadWrite.CrossTenantAccess",)),
    "unified_audit_log": StepPermissions(
        read=("Exchange.ManageAsApp", "ActivityFeed.Read"),
        apply=("Exchange.ManageAsApp", "ActivityFeed.Read"),
        # Exchange Online reads the app's Entra role: Global Reader can read, only a write role can set.
        read_roles=("Global Reader",),
        apply_roles=("Exchange Administrator",),
    ),
}


# A held permission that also grants what another one would, for the operations we call.
IMPLIES: dict[str, frozenset[str]] = {
    "RoleManagement.ReadWrite.Directory": frozenset({"RoleManagement.Read.Directory"}),
    "Policy.ReadWrite.CrossTenantAccess": frozenset({"Policy.Read.All"}),  # enough to read partners
    "User.ReadWrite.All": frozenset({"User.Read.All"}),
    "Directory.Read.All": frozenset({"User.Read.All", "RoleManagement.Read.Directory", "Organization.Read.All"}),
}


def effective(held: set[str] | frozenset[str]) -> set[str]:
    """The permissions ``held`` grants, counting what each implies."""
    result = set(held)
    for permission in held:
        result |= IMPLIES.get(permission, frozenset())
    return result


def all_permissions() -> list[str]:
    """Every permission the provider's app should request (its required resource access)."""
    names = {p for needs in STEP_PERMISSIONS.values() for p in needs.apply}
    names |= {p for needs in STEP_PERMISSIONS.values() for p in needs.read if p not in effective(names)}
    return sorted(names, key=lambda p: (PERMISSION_RESOURCE[p].value, p))
