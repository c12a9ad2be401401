"""Graph v1.0 routes on the real paths. Parsing and serialising only; rules live in ``models.py``."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sandbox.core.errors import ErrorSet
from sandbox.core.service import build_service_app, finish_service_app, json_body
from sandbox.core.world import World
from sandbox.graph.auth import authorize, customer_tenant
from sandbox.graph.collections import collection, entity
from sandbox.graph.errors import BadRequest, NotEmulated, RequestBadRequest, ResourceNotFound, ServiceUnavailable, TooManyRequests
from sandbox.graph.models import Directory

USER_FILTERS = {"id", "mail", "userPrincipalName", "userType", "displayName", "externalUserState", "creationType"}
USER_COLLECTIONS = {"otherMails", "proxyAddresses"}
PARTNERS = "/v1.0/policies/crossTenantAccessPolicy/partners"
ROLES = "/v1.0/roleManagement/directory"


ERRORS = ErrorSet(
    request_id_header="request-id",
    throttled=TooManyRequests,
    unavailable=ServiceUnavailable,
    not_emulated_builder=NotEmulated,
    bad_request=BadRequest,
)


def _created(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=201)


def _guid(value: Any, name: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError as exc:
        raise RequestBadRequest(f"Invalid value specified for property '{name}' of resource.") from exc


def build_app(world: World) -> FastAPI:
    app = build_service_app(world, "graph", ERRORS)

    def directory(request: Request, operation: str) -> Directory:
        return customer_tenant(world, authorize(world, request, operation)).directory

    # --- organization and users -------------------------------------------------------------------
    @app.get("/v1.0/organization")
    async def list_organization(request: Request) -> Any:
        d = directory(request, "list_organization")
        return collection(request, [d.organization()], "organization", {"id"})

    @app.get("/v1.0/users")
    async def list_users(request: Request) -> Any:
        d = directory(request, "list_users")
        now = world.clock.now()
        with world.lock:
            users = [u.to_graph(now) for u in d.users.values() if u.visible(now)]
        return collection(request, users, "users", USER_FILTERS, USER_COLLECTIONS)

    @app.get("/v1.0/users/{user_ref}")
    async def get_user(user_ref: str, request: Request) -> Any:
        d = directory(request, "get_user")
        now = world.clock.now()
        with world.lock:
            match = next(
                (u for u in d.users.values() if u.visible(now) and user_ref.lower() in (u.id, u.user_principal_name.lower())),
                None,
            )
            if match is None:
                raise ResourceNotFound(f"Resource '{user_ref}' does not exist or one of its queried reference-property objects are not present.")
            return entity(match.to_graph(now), "users", request)

    @app.post("/v1.0/invitations")
    async def create_invitation(request: Request) -> Any:
        claims = authorize(world, request, "create_invitation")
        tenant = customer_tenant(world, claims)
        body = await json_body(request, ERRORS)
        for required in ("invitedUserEmailAddress", "inviteRedirectUrl"):
            if not isinstance(body.get(required), str) or not body[required].strip():
                raise BadRequest(f"The property '{required}' is required and must be a non-empty string.")
        retry_after = tenant.directory.invitation_limit.acquire()
        if retry_after is not None:
            raise TooManyRequests(retry_after)
        with world.lock:
            invitation = tenant.directory.invite(
                email=body["invitedUserEmailAddress"].strip(),
                display_name=body.get("invitedUserDisplayName"),
                redirect_url=body["inviteRedirectUrl"],
                send_message=bool(body.get("sendInvitationMessage", False)),
                user_type=body.get("invitedUserType", "Guest"),
                now=world.clock.now(),
                redeem_after=tenant.spec.guest.redeem_after,
            )
        return _created({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#invitations/$entity", **invitation})

    # --- directory roles -----------------------------------------------------------------------------
    @app.get(f"{ROLES}/roleDefinitions")
    async def list_role_definitions(request: Request) -> Any:
        directory(request, "list_role_definitions")
        return collection(request, Directory.role_definitions(), "roleManagement/directory/roleDefinitions", {"id", "templateId", "displayName", "isBuiltIn"})

    @app.get(f"{ROLES}/roleDefinitions/{{definition_id}}")
    async def get_role_definition(definition_id: str, request: Request) -> Any:
        directory(request, "get_role_definition")
        for definition in Directory.role_definitions():
            if definition["id"] == definition_id.lower():
                return entity(definition, "roleManagement/directory/roleDefinitions", request)
        raise ResourceNotFound(f"Resource '{definition_id}' does not exist or one of its queried reference-property objects are not present.")

    @app.get(f"{ROLES}/roleAssignments")
    async def list_role_assignments(request: Request) -> Any:
        d = directory(request, "list_role_assignments")
        now = world.clock.now()
        with world.lock:
            items = [a.to_graph() for a in d.role_assignments.values() if a.visible(now)]
        return collection(request, items, "roleManagement/directory/roleAssignments", {"id", "principalId", "roleDefinitionId", "directoryScopeId"})

    @app.get(f"{ROLES}/roleAssignments/{{assignment_id}}")
    async def get_role_assignment(assignment_id: str, request: Request) -> Any:
        d = directory(request, "get_role_assignment")
        now = world.clock.now()
        with world.lock:
            assignment = d.role_assignments.get(assignment_id)
            if assignment is None or not assignment.visible(now):
                raise ResourceNotFound(f"Resource '{assignment_id}' does not exist or one of its queried reference-property objects are not present.")
            return entity(assignment.to_graph(), "roleManagement/directory/roleAssignments", request)

    @app.post(f"{ROLES}/roleAssignments")
    async def create_role_assignment(request: Request) -> Any:
        d = directory(request, "create_role_assignment")
        body = await json_body(request, ERRORS)
        if "appScopeId" in body and body.get("appScopeId") is not None:
            raise RequestBadRequest("App-scoped role assignments are not emulated; use directoryScopeId '/'.")
        for required in ("roleDefinitionId", "principalId"):
            if not body.get(required):
                raise RequestBadRequest(f"Property '{required}' is required.")
        with world.lock:
            assignment = d.assign_role(
                _guid(body["roleDefinitionId"], "roleDefinitionId"),
                _guid(body["principalId"], "principalId"),
                body.get("directoryScopeId") or "/",
                world.clock.now(),
            )
        return _created(
            {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#roleManagement/directory/roleAssignments/$entity", **assignment.to_graph()}
        )

    @app.delete(f"{ROLES}/roleAssignments/{{assignment_id}}", status_code=204)
    async def delete_role_assignment(assignment_id: str, request: Request) -> Response:
        d = directory(request, "delete_role_assignment")
        now = world.clock.now()
        with world.lock:
            assignment = d.role_assignments.get(assignment_id)
            if assignment is None or not assignment.visible(now):
                raise ResourceNotFound(f"Resource '{assignment_id}' does not exist or one of its queried reference-property objects are not present.")
            del d.role_assignments[assignment_id]
        return Response(status_code=204)

    # --- cross-tenant access partners ------------------------------------------------------------------
    @app.get(PARTNERS)
    async def list_partners(request: Request) -> Any:
        d = directory(request, "list_partners")
        now = world.clock.now()
        with world.lock:
            items = [p.to_graph() for p in d.partners.values() if p.visible(now)]
        return collection(request, items, "policies/crossTenantAccessPolicy/partners", {"tenantId"})

    @app.get(f"{PARTNERS}/{{partner_tenant_id}}")
    async def get_partner(partner_tenant_id: str, request: Request) -> Any:
        d = directory(request, "get_partner")
        with world.lock:
            return entity(d.partner(partner_tenant_id, world.clock.now()).to_graph(), "policies/crossTenantAccessPolicy/partners", request)

    @app.post(PARTNERS)
    async def create_partner(request: Request) -> Any:
        d = directory(request, "create_partner")
        body = await json_body(request, ERRORS)
        if body.get("tenantId"):
            body["tenantId"] = _guid(body["tenantId"], "tenantId")
        with world.lock:
            partner = d.create_partner(body, world.clock.now())
        return _created(
            {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#policies/crossTenantAccessPolicy/partners/$entity", **partner.to_graph()}
        )

    @app.patch(f"{PARTNERS}/{{partner_tenant_id}}", status_code=204)
    async def update_partner(partner_tenant_id: str, request: Request) -> Response:
        d = directory(request, "update_partner")
        body = await json_body(request, ERRORS)
        with world.lock:
            d.update_partner(partner_tenant_id, body, world.clock.now())
        return Response(status_code=204)

    @app.delete(f"{PARTNERS}/{{partner_tenant_id}}", status_code=204)
    async def delete_partner(partner_tenant_id: str, request: Request) -> Response:
        d = directory(request, "delete_partner")
        with world.lock:
            d.delete_partner(partner_tenant_id, world.clock.now())
        return Response(status_code=204)

    # --- service principals ---------------------------------------------------------------------------
    @app.get("/v1.0/servicePrincipals")
    async def list_service_principals(request: Request) -> Any:
        d = directory(request, "list_service_principals")
        now = world.clock.now()
        with world.lock:
            items = [sp.to_graph() for sp in d.service_principals.values() if sp.visible(now)]
        return collection(request, items, "servicePrincipals", {"id", "appId", "displayName", "servicePrincipalType"})

    @app.get("/v1.0/servicePrincipals(appId='{app_id}')")
    async def get_service_principal_by_app_id(app_id: str, request: Request) -> Any:
        d = directory(request, "get_service_principal")
        now = world.clock.now()
        with world.lock:
            sp = d.service_principal_by_app_id(app_id)
            if sp is None or not sp.visible(now):
                raise ResourceNotFound(f"Resource '{app_id}' does not exist or one of its queried reference-property objects are not present.")
            return entity(sp.to_graph(), "servicePrincipals", request)

    @app.get("/v1.0/servicePrincipals/{sp_id}")
    async def get_service_principal(sp_id: str, request: Request) -> Any:
        d = directory(request, "get_service_principal")
        with world.lock:
            return entity(d.visible_service_principal(sp_id, world.clock.now()).to_graph(), "servicePrincipals", request)

    @app.get("/v1.0/servicePrincipals/{sp_id}/appRoleAssignments")
    async def list_app_role_assignments(sp_id: str, request: Request) -> Any:
        d = directory(request, "list_app_role_assignments")
        now = world.clock.now()
        with world.lock:
            sp = d.visible_service_principal(sp_id, now)
            items = [a.to_graph() for a in sp.app_role_assignments if a.visible(now)]
        return collection(request, items, f"servicePrincipals('{sp_id}')/appRoleAssignments", {"resourceId", "appRoleId"})

    # --- tenant discovery ---------------------------------------------------------------------------------
    @app.get("/v1.0/tenantRelationships/findTenantInformationByTenantId(tenantId='{tenant_id}')")
    async def find_tenant_information(tenant_id: str, request: Request) -> Any:
        authorize(world, request, "find_tenant_information")
        tenant = world.tenant(tenant_id)
        if tenant is None:
            raise ResourceNotFound(f"Tenant '{tenant_id}' not found.")
        return {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.tenantInformation",
            "tenantId": tenant.id,
            "federationBrandName": None,
            "displayName": tenant.spec.display_name,
            "defaultDomainName": tenant.spec.initial_domain,
        }

    return finish_service_app(app, ERRORS)
