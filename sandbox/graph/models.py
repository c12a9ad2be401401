"""A tenant's directory as Graph sees it, with Entra's rules and its replication lag. No HTTP here.

Every object records when it was created and when it becomes visible to reads: an object created
a moment ago is "not found" until ``created + replication_lag`` (reference §9, eventual
consistency). Writes that refer to another object (a role assignment's principal) see the same lag.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sandbox.core.catalog import DIRECTORY_ROLES, RESOURCES, ResourceApp
from sandbox.core.rate_limits import SlidingWindowLimit
from sandbox.core.tokens import new_guid
from sandbox.graph.errors import (
    BadRequest,
    MultipleObjectsWithSameKeyValue,
    RequestBadRequest,
    ResourceNotFound,
)

# Graph's documented per-tenant limit on invitations, all apps together (throttling-limits page).
INVITATIONS_PER_WINDOW = 150
INVITATION_WINDOW_S = 5.0
_FORBIDDEN_LOCAL_CHARS = set("~!#$%^&*()+=[]{}\\/|;:\"<>?,")


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


@dataclass
class DirectoryObject:
    id: str
    created_at: datetime
    visible_at: datetime

    def visible(self, now: datetime) -> bool:
        return now >= self.visible_at


@dataclass
class User(DirectoryObject):
    display_name: str
    user_principal_name: str
    mail: str | None
    other_mails: list[str]
    user_type: str
    creation_type: str | None = None
    invited_at: datetime | None = None
    redeem_at: datetime | None = None  # None: never redeems
    accepted: bool = False

    def external_state(self, now: datetime) -> tuple[str | None, datetime | None]:
        if self.creation_type != "Invitation":  # B2B invitees (guests or members) have a state; others none
            return None, None
        if self.accepted:
            return "Accepted", self.created_at
        if self.redeem_at is not None and now >= self.redeem_at:
            return "Accepted", self.redeem_at
        return "PendingAcceptance", self.invited_at or self.created_at

    def to_graph(self, now: datetime) -> dict[str, Any]:
        state, changed = self.external_state(now)
        return {
            "id": self.id,
            "displayName": self.display_name,
            "userPrincipalName": self.user_principal_name,
            "mail": self.mail,
            "otherMails": list(self.other_mails),
            "proxyAddresses": [f"SMTP:{self.mail}"] if self.mail else [],
            "userType": self.user_type,
            "creationType": self.creation_type,
            "externalUserState": state,
            "externalUserStateChangeDateTime": _iso(changed),
            "createdDateTime": _iso(self.created_at),
            "accountEnabled": True,
        }


@dataclass
class RoleAssignment(DirectoryObject):
    role_definition_id: str
    principal_id: str
    directory_scope_id: str

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "roleDefinitionId": self.role_definition_id,
            "principalId": self.principal_id,
            "directoryScopeId": self.directory_scope_id,
            "resourceScope": self.directory_scope_id,
        }


PARTNER_PROPERTIES = (
    "inboundTrust",
    "automaticUserConsentSettings",
    "b2bCollaborationInbound",
    "b2bCollaborationOutbound",
    "b2bDirectConnectInbound",
    "b2bDirectConnectOutbound",
    "tenantRestrictions",
    "isServiceProvider",
    "isInMultiTenantOrganization",
)
_PARTNER_WRITABLE = set(PARTNER_PROPERTIES)
INBOUND_TRUST_FLAGS = ("isMfaAccepted", "isCompliantDeviceAccepted", "isHybridAzureADJoinedDeviceAccepted")


@dataclass
class Partner(DirectoryObject):
    tenant_id: str
    properties: dict[str, Any] = field(default_factory=dict)

    def to_graph(self) -> dict[str, Any]:
        body: dict[str, Any] = {"tenantId": self.tenant_id}
        for name in PARTNER_PROPERTIES:
            body[name] = copy.deepcopy(self.properties.get(name))
        if body["inboundTrust"] is not None:
            # Graph fills the members of a set inboundTrust that were never given with false.
            body["inboundTrust"] = {key: bool(body["inboundTrust"].get(key)) for key in INBOUND_TRUST_FLAGS}
        auto = body["automaticUserConsentSettings"] or {}
        body["automaticUserConsentSettings"] = {
            "inboundAllowed": auto.get("inboundAllowed"),
            "outboundAllowed": auto.get("outboundAllowed"),
        }
        body["isServiceProvider"] = bool(body["isServiceProvider"])
        body["isInMultiTenantOrganization"] = bool(body["isInMultiTenantOrganization"])
        return body


@dataclass
class AppRoleAssignment(DirectoryObject):
    app_role_id: str
    principal_id: str
    principal_display_name: str
    resource_id: str
    resource_display_name: str

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "createdDateTime": _iso(self.created_at),
            "appRoleId": self.app_role_id,
            "principalDisplayName": self.principal_display_name,
            "principalId": self.principal_id,
            "principalType": "ServicePrincipal",
            "resourceDisplayName": self.resource_display_name,
            "resourceId": self.resource_id,
            "deletedDateTime": None,
        }


@dataclass
class ServicePrincipal(DirectoryObject):
    app_id: str
    display_name: str
    app_owner_organization_id: str | None = None
    app_roles: list[dict[str, Any]] = field(default_factory=list)
    app_role_assignments: list[AppRoleAssignment] = field(default_factory=list)

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "appId": self.app_id,
            "displayName": self.display_name,
            "appOwnerOrganizationId": self.app_owner_organization_id,
            "servicePrincipalType": "Application",
            "accountEnabled": True,
            "appRoles": copy.deepcopy(self.app_roles),
        }


class Directory:
    """One tenant's directory objects and the operations Graph offers on them."""

    def __init__(
        self,
        tenant_id: str,
        display_name: str,
        initial_domain: str,
        replication_lag: timedelta,
        created_at: datetime,
    ) -> None:
        self.tenant_id = tenant_id
        self.display_name = display_name
        self.initial_domain = initial_domain
        self.replication_lag = replication_lag
        self.users: dict[str, User] = {}
        self.role_assignments: dict[str, RoleAssignment] = {}
        self.partners: dict[str, Partner] = {}
        self.service_principals: dict[str, ServicePrincipal] = {}
        self.invitation_limit = SlidingWindowLimit(INVITATIONS_PER_WINDOW, INVITATION_WINDOW_S)
        for resource in RESOURCES:
            self._add_resource_sp(resource, created_at)

    # --- organization -------------------------------------------------------------------------
    def organization(self) -> dict[str, Any]:
        return {
            "id": self.tenant_id,
            "displayName": self.display_name,
            "tenantType": "AAD",
            "countryLetterCode": "US",
            "verifiedDomains": [
                {
                    "capabilities": "Email, OfficeCommunicationsOnline",
                    "isDefault": True,
                    "isInitial": True,
                    "name": self.initial_domain,
                    "type": "Managed",
                }
            ],
        }

    # --- users and invitations ----------------------------------------------------------------
    def _stamp(self, now: datetime, lag: bool = True) -> dict[str, Any]:
        return {"id": new_guid(), "created_at": now, "visible_at": now + self.replication_lag if lag else now}

    def add_guest(
        self,
        email: str,
        display_name: str,
        now: datetime,
        *,
        address_in: str = "mail",
        accepted: bool = False,
        redeem_after: timedelta | None = None,
        lag: bool = True,
        user_type: str = "Guest",
    ) -> User:
        local = email.replace("@", "_")
        user = User(
            **self._stamp(now, lag),
            display_name=display_name,
            user_principal_name=f"{local}#EXT#@{self.initial_domain}",
            mail=email if address_in == "mail" else None,
            other_mails=[email] if address_in == "otherMails" else [],
            user_type=user_type,
            creation_type="Invitation",
            invited_at=now,
            redeem_at=now + redeem_after if redeem_after is not None else None,
            accepted=accepted,
        )
        self.users[user.id] = user
        return user

    def users_matching_address(self, email: str) -> list[User]:
        """Every user (visible or not) whose mail, otherMails or UPN is this address."""
        wanted = email.lower()
        guest_upn_prefix = f"{wanted.replace('@', '_')}#ext#@"
        return [
            u
            for u in self.users.values()
            if (u.mail or "").lower() == wanted
            or wanted in (m.lower() for m in u.other_mails)
            or u.user_principal_name.lower().startswith(guest_upn_prefix)
        ]

    def invite(
        self,
        email: str,
        display_name: str | None,
        redirect_url: str,
        send_message: bool,
        user_type: str,
        now: datetime,
        redeem_after: timedelta | None,
    ) -> dict[str, Any]:
        """``POST /invitations``. Re-inviting an address that already has a guest returns that guest.

        Microsoft does not document the re-invite case (reference §1, "[?]"); returning the
        existing ``invitedUser.id`` and creating nothing is what we chose: clients must look up
        first and reconcile ids afterwards either way.
        """
        local, _, domain = email.partition("@")
        if (
            not local
            or not domain
            or "." not in domain
            or any(c in _FORBIDDEN_LOCAL_CHARS for c in local)
            or local[0] in ".-"
            or local[-1] in ".-"
        ):
            raise BadRequest(f"The email address '{email}' is not valid.")
        if user_type not in ("Guest", "Member"):
            raise BadRequest(f"Invalid value '{user_type}' for property 'invitedUserType'.")
        existing = self.users_matching_address(email)
        user = existing[0] if existing else self.add_guest(email, display_name or email, now, redeem_after=redeem_after, user_type=user_type)
        state, _ = user.external_state(now)
        redeem = (
            f"https://login.microsoftonline.com/redeem?rd=https%3a%2f%2finvitations.microsoft.com%2fredeem%2f%3ftenant%3d"
            f"{self.tenant_id}%26user%3d{user.id}%26ticket%3d{new_guid().replace('-', '')}"
        )
        return {
            "id": new_guid(),
            "inviteRedeemUrl": redeem,
            "invitedUserDisplayName": display_name,
            "invitedUserType": user_type,
            "invitedUserEmailAddress": email,
            "sendInvitationMessage": send_message,
            "resetRedemption": False,
            "inviteRedirectUrl": redirect_url,
            "status": "Completed" if state == "Accepted" else "PendingAcceptance",
            "invitedUserMessageInfo": {"messageLanguage": None, "ccRecipients": [], "customizedMessageBody": None},
            "invitedUser": {"id": user.id},
        }

    def visible_user(self, user_id: str, now: datetime) -> User:
        user = self.users.get(user_id)
        if user is None or not user.visible(now):
            raise ResourceNotFound(
                f"Resource '{user_id}' does not exist or one of its queried reference-property objects are not present."
            )
        return user

    # --- directory roles ----------------------------------------------------------------------
    @staticmethod
    def role_definitions() -> list[dict[str, Any]]:
        return [
            {
                "id": template_id,
                "templateId": template_id,
                "displayName": name,
                "isBuiltIn": True,
                "isEnabled": True,
                "description": f"Built-in role {name}.",
            }
            for name, template_id in DIRECTORY_ROLES.items()
        ]

    def _principal_exists(self, principal_id: str, now: datetime) -> bool:
        obj = self.users.get(principal_id) or self.service_principals.get(principal_id)
        return obj is not None and obj.visible(now)

    def assign_role(
        self, role_definition_id: str, principal_id: str, directory_scope_id: str, now: datetime, lag: bool = True
    ) -> RoleAssignment:
        if role_definition_id not in DIRECTORY_ROLES.values():
            raise ResourceNotFound(f"Resource '{role_definition_id}' does not exist or one of its queried reference-property objects are not present.")
        if directory_scope_id != "/":
            raise RequestBadRequest("Only tenant-wide ('/') directory scopes are emulated by the sandbox.")
        if not self._principal_exists(principal_id, now):
            raise ResourceNotFound(
                f"Resource '{principal_id}' does not exist or one of its queried reference-property objects are not present."
            )
        for existing in self.role_assignments.values():
            if (existing.role_definition_id, existing.principal_id, existing.directory_scope_id) == (
                role_definition_id,
                principal_id,
                directory_scope_id,
            ):
                # Observed on real tenants (reference §2): 400, not 409, for a duplicate assignment.
                raise RequestBadRequest(
                    "A conflicting object with one or more of the specified property values is present in the directory."
                )
        assignment = RoleAssignment(
            **self._stamp(now, lag),
            role_definition_id=role_definition_id,
            principal_id=principal_id,
            directory_scope_id=directory_scope_id,
        )
        self.role_assignments[assignment.id] = assignment
        return assignment

    def role_template_ids_of(self, principal_id: str) -> list[str]:
        return [a.role_definition_id for a in self.role_assignments.values() if a.principal_id == principal_id]

    # --- cross-tenant access partners -----------------------------------------------------------
    @staticmethod
    def _check_partner_body(body: dict[str, Any], creating: bool) -> dict[str, Any]:
        properties = {}
        for key, value in body.items():
            if key in ("tenantId", "@odata.type"):
                continue
            if key not in _PARTNER_WRITABLE:
                raise RequestBadRequest(f"Invalid property '{key}'.")
            properties[key] = copy.deepcopy(value)
        if not creating and "tenantId" in body:
            raise RequestBadRequest("Property 'tenantId' is read-only and cannot be set.")
        return properties

    def partner(self, tenant_id: str, now: datetime) -> Partner:
        partner = self.partners.get(tenant_id.lower())
        if partner is None or not partner.visible(now):
            raise ResourceNotFound(f"Resource '{tenant_id}' does not exist or one of its queried reference-property objects are not present.")
        return partner

    def create_partner(self, body: dict[str, Any], now: datetime, lag: bool = True) -> Partner:
        tenant_id = str(body.get("tenantId") or "").strip().lower()
        if not tenant_id:
            raise RequestBadRequest("Property 'tenantId' is required.")
        properties = self._check_partner_body(body, creating=True)
        if tenant_id in self.partners:
            raise MultipleObjectsWithSameKeyValue(
                "Another object with the same value for property tenantId already exists.",
                details=[
                    {
                        "code": "ConflictingObjects",
                        "message": "Another object with the same value for property tenantId already exists.",
                        "target": "tenantId",
                    }
                ],
            )
        stamp = self._stamp(now, lag)
        stamp.pop("id")
        partner = Partner(id=tenant_id, **stamp, tenant_id=tenant_id, properties=properties)
        self.partners[tenant_id] = partner
        return partner

    def update_partner(self, tenant_id: str, body: dict[str, Any], now: datetime) -> Partner:
        partner = self.partner(tenant_id, now)
        for key, value in self._check_partner_body(body, creating=False).items():
            current = partner.properties.get(key)
            if isinstance(current, dict) and isinstance(value, dict):
                merged = copy.deepcopy(current)
                merged.update(value)  # PATCH of a complex property merges its members
                partner.properties[key] = merged
            else:
                partner.properties[key] = value
        return partner

    def delete_partner(self, tenant_id: str, now: datetime) -> None:
        self.partner(tenant_id, now)
        del self.partners[tenant_id.lower()]

    # --- service principals and app role assignments ----------------------------------------------
    def _add_resource_sp(self, resource: ResourceApp, now: datetime) -> None:
        sp = ServicePrincipal(
            id=new_guid(),
            created_at=now,
            visible_at=now,
            app_id=resource.app_id,
            display_name=resource.display_name,
            app_owner_organization_id="f8cdef31-a31e-4b4a-93e4-5f571e91255a",
            app_roles=[
                {"id": role_id, "value": name, "displayName": name, "allowedMemberTypes": ["Application"], "isEnabled": True}
                for name, role_id in resource.app_roles.items()
            ],
        )
        self.service_principals[sp.id] = sp

    def service_principal_by_app_id(self, app_id: str) -> ServicePrincipal | None:
        for sp in self.service_principals.values():
            if sp.app_id.lower() == app_id.lower():
                return sp
        return None

    def visible_service_principal(self, sp_id: str, now: datetime) -> ServicePrincipal:
        sp = self.service_principals.get(sp_id)
        if sp is None or not sp.visible(now):
            raise ResourceNotFound(f"Resource '{sp_id}' does not exist or one of its queried reference-property objects are not present.")
        return sp

    def consent_app(
        self,
        app_id: str,
        display_name: str,
        owner_tenant_id: str,
        grants: dict[str, list[str]],
        directory_roles: list[str],
        now: datetime,
        lag: bool = True,
    ) -> ServicePrincipal:
        """What admin consent does: create the app's service principal (once) and grant app roles.

        ``grants`` maps a resource key to app role ids. Existing grants are kept; consenting twice
        creates no second service principal or assignment.
        """
        sp = self.service_principal_by_app_id(app_id)
        if sp is None:
            sp = ServicePrincipal(**self._stamp(now, lag), app_id=app_id, display_name=display_name, app_owner_organization_id=owner_tenant_id)
            self.service_principals[sp.id] = sp
        for resource_key, role_ids in grants.items():
            resource = next(r for r in RESOURCES if r.key == resource_key)
            resource_sp = self.service_principal_by_app_id(resource.app_id)
            assert resource_sp is not None
            held = {a.app_role_id for a in sp.app_role_assignments if a.resource_id == resource_sp.id}
            for role_id in role_ids:
                if role_id in held:
                    continue
                sp.app_role_assignments.append(
                    AppRoleAssignment(
                        **self._stamp(now, lag),
                        app_role_id=role_id,
                        principal_id=sp.id,
                        principal_display_name=display_name,
                        resource_id=resource_sp.id,
                        resource_display_name=resource.display_name,
                    )
                )
        for role_name in directory_roles:
            template = DIRECTORY_ROLES[role_name]
            if template not in self.role_template_ids_of(sp.id):
                assignment = RoleAssignment(**self._stamp(now, lag), role_definition_id=template, principal_id=sp.id, directory_scope_id="/")
                self.role_assignments[assignment.id] = assignment
        return sp

    def granted_roles(self, app_id: str, resource: ResourceApp, now: datetime) -> list[str]:
        """Permission names granted to ``app_id`` on ``resource`` that a token issued now carries.

        Tokens see grants only once replicated, like Graph reads (reference §5: expect a delay
        between consent and the token containing roles).
        """
        sp = self.service_principal_by_app_id(app_id)
        resource_sp = self.service_principal_by_app_id(resource.app_id)
        if sp is None or resource_sp is None:
            return []
        by_id = {v: k for k, v in resource.app_roles.items()}
        return sorted(
            by_id[a.app_role_id]
            for a in sp.app_role_assignments
            if a.resource_id == resource_sp.id and a.visible(now) and a.app_role_id in by_id
        )

    def snapshot(self, now: datetime) -> dict[str, Any]:
        """Everything in the directory, including objects not yet replicated (for inspection)."""
        return {
            "organization": self.organization(),
            "users": [u.to_graph(now) | {"_visible": u.visible(now)} for u in self.users.values()],
            "roleAssignments": [a.to_graph() | {"_visible": a.visible(now)} for a in self.role_assignments.values()],
            "partners": [p.to_graph() | {"_visible": p.visible(now)} for p in self.partners.values()],
            "servicePrincipals": [
                sp.to_graph()
                | {"_visible": sp.visible(now), "appRoleAssignments": [a.to_graph() for a in sp.app_role_assignments]}
                for sp in self.service_principals.values()
                if sp.app_owner_organization_id != "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
            ],
        }
