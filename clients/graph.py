"""Microsoft Graph v1.0: the operations onboarding uses, one method each, typed results.

On a 403 the error names the permission the operation needs (never a bare 403): the least
privileged application permission for each operation is listed in :data:`LEAST_PRIVILEGED`.
A role assignment that exists already is refused with 400 "conflicting object" (or 409), which
:meth:`GraphClient.translate` turns into :class:`~clients.errors.RoleAlreadyAssigned`.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import requests
from pydantic import BaseModel, ConfigDict, Field

from clients.errors import ApiError, BadRequest, PermissionDenied, RoleAlreadyAssigned, missing_permission
from clients.http import ApiClient

# Least-privileged application permission per operation (Graph v1.0 permission tables).
LEAST_PRIVILEGED: dict[str, str] = {
    "get_organization": "Organization.Read.All",
    "find_users": "User.Read.All",
    "create_invitation": "User.Invite.All",
    "list_role_assignments": "RoleManagement.Read.Directory",
    "create_role_assignment": "RoleManagement.ReadWrite.Directory",
    "get_partner": "Policy.Read.All",
    "create_partner": "Policy.ReadWrite.CrossTenantAccess",
    "update_partner": "Policy.ReadWrite.CrossTenantAccess",
    "find_service_principal": "Application.Read.All",
    "list_app_role_assignments": "Application.Read.All",
}


class GraphModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class VerifiedDomain(GraphModel):
    name: str
    is_initial: bool = Field(default=False, alias="isInitial")
    is_default: bool = Field(default=False, alias="isDefault")


class Organization(GraphModel):
    id: str
    display_name: str = Field(alias="displayName")
    verified_domains: list[VerifiedDomain] = Field(default_factory=list, alias="verifiedDomains")

    @property
    def initial_domain(self) -> str | None:
        return next((d.name for d in self.verified_domains if d.is_initial), None)


class User(GraphModel):
    id: str
    display_name: str | None = Field(default=None, alias="displayName")
    user_principal_name: str | None = Field(default=None, alias="userPrincipalName")
    mail: str | None = None
    other_mails: list[str] = Field(default_factory=list, alias="otherMails")
    user_type: str | None = Field(default=None, alias="userType")
    external_user_state: str | None = Field(default=None, alias="externalUserState")


class Invitation(GraphModel):
    id: str
    status: str
    invited_user_id: str
    invite_redeem_url: str | None = None


class RoleAssignment(GraphModel):
    id: str
    role_definition_id: str = Field(alias="roleDefinitionId")
    principal_id: str = Field(alias="principalId")
    directory_scope_id: str = Field(default="/", alias="directoryScopeId")


class Partner(GraphModel):
    """A cross-tenant access partner entry; complex properties kept as Graph returns them."""

    tenant_id: str = Field(alias="tenantId")
    inbound_trust: dict[str, Any] | None = Field(default=None, alias="inboundTrust")
    automatic_user_consent_settings: dict[str, Any] | None = Field(default=None, alias="automaticUserConsentSettings")


class ServicePrincipal(GraphModel):
    id: str
    app_id: str = Field(alias="appId")
    display_name: str | None = Field(default=None, alias="displayName")


class AppRoleAssignment(GraphModel):
    id: str
    app_role_id: str = Field(alias="appRoleId")
    resource_id: str = Field(alias="resourceId")
    resource_display_name: str | None = Field(default=None, alias="resourceDisplayName")


def odata_string(value: str) -> str:
    """An OData string literal: single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def _says_conflicting_object(message: str) -> bool:
    """Graph's only signal that a role assignment exists already: the text of its 400."""
    return "conflicting object" in message


def _require_id(value: str, name: str) -> str:
    if not value or not value.strip():
        raise ValueError(f"Expected a non-empty value for {name}")
    return value


class GraphClient(ApiClient):
    """Graph v1.0 for one customer tenant (the token decides the tenant)."""

    service = "graph"

    def translate(self, error: ApiError) -> ApiError:
        permission = LEAST_PRIVILEGED.get(error.operation or "")
        # Directory calls say Authorization_RequestDenied; the invitation manager says Unauthorized.
        if isinstance(error, PermissionDenied) and permission and error.code in ("Authorization_RequestDenied", "Unauthorized"):
            return missing_permission(
                error, permission,
                f"the provider's app needs the application permission {permission} in tenant {self.tenant_id}",
                next_action=f"Have the customer's admin grant {permission} (re-open the admin-consent link), or run this step in guide mode.",
            )
        if error.operation == "create_role_assignment" and isinstance(error, BadRequest) and _says_conflicting_object(error.api_message):
            return RoleAlreadyAssigned.from_error(error, "the role assignment exists already")
        return error

    def _call(self, method: str, path: str, operation: str, **kwargs: Any) -> requests.Response:
        return self.request(method, path, operation=operation, **kwargs)

    def _list(self, path: str, operation: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every item of a collection, following ``@odata.nextLink`` on Graph's own host only (:meth:`next_page`)."""
        response = self._call("GET", path, operation, params=params, headers=headers)
        body = response.json()
        items: list[dict[str, Any]] = list(body.get("value", []))
        while next_url := self.next_page(body.get("@odata.nextLink"), response, operation=operation):
            response = self._call("GET", next_url, operation)
            body = response.json()
            items.extend(body.get("value", []))
        return items

    # --- organization and users ---------------------------------------------------------------------
    def get_organization(self) -> Organization:
        values = self._list("/v1.0/organization", "get_organization")
        if not values:
            raise ApiError("graph", 200, None, "GET /organization returned no organization", operation="get_organization")
        return Organization.model_validate(values[0])

    def find_users_by_address(self, address: str, initial_domain: str | None = None) -> list[User]:
        """Users whose mail, otherMails or guest UPN is ``address`` (Microsoft's existence check)."""
        literal = odata_string(address)
        clauses = [f"mail eq {literal}", f"otherMails/any(x:x eq {literal})", f"proxyAddresses/any(x:x eq {odata_string('SMTP:' + address)})"]
        if initial_domain:
            clauses.append(f"userPrincipalName eq {odata_string(address.replace('@', '_') + '#EXT#@' + initial_domain)}")
        params = {"$filter": " or ".join(clauses), "$select": "id,displayName,userPrincipalName,mail,otherMails,userType,externalUserState"}
        return [User.model_validate(u) for u in self._list("/v1.0/users", "find_users", params=params)]

    def create_invitation(self, email: str, display_name: str, redirect_url: str, send_message: bool) -> Invitation:
        body = {
            "invitedUserEmailAddress": email,
            "invitedUserDisplayName": display_name,
            "inviteRedirectUrl": redirect_url,
            "sendInvitationMessage": send_message,
            "invitedUserType": "Guest",
        }
        data = self._call("POST", "/v1.0/invitations", "create_invitation", json=body).json()
        return Invitation(id=data["id"], status=data["status"], invited_user_id=data["invitedUser"]["id"], invite_redeem_url=data.get("inviteRedeemUrl"))

    # --- directory roles ----------------------------------------------------------------------------
    def list_role_assignments(self, principal_id: str) -> list[RoleAssignment]:
        _require_id(principal_id, "principal_id")
        params = {"$filter": f"principalId eq {odata_string(principal_id)}"}
        return [RoleAssignment.model_validate(a) for a in self._list("/v1.0/roleManagement/directory/roleAssignments", "list_role_assignments", params)]

    def create_role_assignment(self, role_definition_id: str, principal_id: str) -> RoleAssignment:
        body = {"roleDefinitionId": _require_id(role_definition_id, "role_definition_id"), "principalId": _require_id(principal_id, "principal_id"),
                "directoryScopeId": "/"}
        data = self._call("POST", "/v1.0/roleManagement/directory/roleAssignments", "create_role_assignment", json=body).json()
        return RoleAssignment.model_validate(data)

    # --- cross-tenant access --------------------------------------------------------------------------
    def get_partner(self, partner_tenant_id: str) -> Partner:
        path = f"/v1.0/policies/crossTenantAccessPolicy/partners/{quote(_require_id(partner_tenant_id, 'partner_tenant_id'))}"
        return Partner.model_validate(self._call("GET", path, "get_partner").json())

    def create_partner(self, body: dict[str, Any]) -> Partner:
        data = self._call("POST", "/v1.0/policies/crossTenantAccessPolicy/partners", "create_partner", json=body).json()
        return Partner.model_validate(data)

    def update_partner(self, partner_tenant_id: str, body: dict[str, Any]) -> None:
        path = f"/v1.0/policies/crossTenantAccessPolicy/partners/{quote(_require_id(partner_tenant_id, 'partner_tenant_id'))}"
        self._call("PATCH", path, "update_partner", json=body)

    # --- service principals -----------------------------------------------------------------------------
    def find_service_principal(self, app_id: str) -> ServicePrincipal | None:
        params = {"$filter": f"appId eq {odata_string(str(uuid.UUID(app_id)))}", "$select": "id,appId,displayName"}
        found = self._list("/v1.0/servicePrincipals", "find_service_principal", params)
        return ServicePrincipal.model_validate(found[0]) if found else None

    def list_app_role_assignments(self, service_principal_id: str) -> list[AppRoleAssignment]:
        path = f"/v1.0/servicePrincipals/{quote(_require_id(service_principal_id, 'service_principal_id'))}/appRoleAssignments"
        return [AppRoleAssignment.model_validate(a) for a in self._list(path, "list_app_role_assignments")]
