"""Microsoft Graph v1.0 as the sandbox emulates it, seen from a client over HTTPS.

Every test checks what a real client would see: the status, ``error.code`` (and the message where
clients or people rely on it), the ``request-id`` header matching ``innerError.request-id``, and the
response shapes from the reference notes (shared/reference/microsoft-apis.md §1-§5, §9-§11).
Replication lag (30 s in the standard scenario) is crossed with ``sandbox.advance``, never by sleeping.
Keep the total advance small: ``reset`` does not rewind the scenario clock, and scheduled consent in
the standard scenario counts from process start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.core.catalog import EXCHANGE, GRAPH, MANAGEMENT, find_permission
from sandbox.core.tokens import TokenSigner
from tests.conftest import CONFIGURED, FRESH, PARTIAL, PROVIDER_TENANT
from tests.sandbox_harness import SandboxHandle, start_sandbox

GRAPH_AUDIENCE = "https://graph.microsoft.com"
EXCHANGE_AUDIENCE = "https://outlook.office365.com"
GLOBAL_READER = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
SECURITY_READER = "5d6b6bb7-de71-4623-b4af-96380a352509"
CONFIGURED_GUEST = "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d@soc.expel.io"
CONFIGURED_GUEST_UPN = "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d_soc.expel.io#EXT#@configured.onmicrosoft.com"
NEW_PARTNER = "12345678-1234-4234-8234-123456789012"
REDIRECT = "https://myapps.microsoft.com"
REPLICATION = "31s"  # the standard scenario's replication lag is 30 s
NOT_FOUND_MESSAGE = "does not exist or one of its queried reference-property objects are not present."

PARTNERS = "/v1.0/policies/crossTenantAccessPolicy/partners"
ROLE_ASSIGNMENTS = "/v1.0/roleManagement/directory/roleAssignments"
ROLE_DEFINITIONS = "/v1.0/roleManagement/directory/roleDefinitions"

# The app's required permissions in the standard scenario (sandbox.core.scenario.AppSpec defaults).
APP_PERMISSIONS = (
    "User.Read.All",
    "User.Invite.All",
    "RoleManagement.ReadWrite.Directory",
    "Policy.Read.All",
    "Policy.ReadWrite.CrossTenantAccess",
    "Organization.Read.All",
    "Application.Read.All",
    "Exchange.ManageAsApp",
    "ActivityFeed.Read",
)


# --- helpers ------------------------------------------------------------------------------------------
class GraphSession:
    """A requests session for the sandbox's Graph port: relative paths, TLS verified, bearer token set."""

    def __init__(self, sandbox: SandboxHandle, token: str | None) -> None:
        self.base = sandbox.base_url("graph")
        self.http = sandbox.session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    @property
    def headers(self) -> Any:
        return self.http.headers

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("https://") else f"{self.base}{path}"
        return self.http.request(method, url, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


def graph(sandbox: SandboxHandle, tenant: str = FRESH) -> GraphSession:
    """A session with a real msal token of the consented app for ``tenant``."""
    return GraphSession(sandbox, sandbox.token(tenant, GRAPH_AUDIENCE))


def mint(sandbox: SandboxHandle, tenant: str, roles: list[str], *, lifetime_s: int = 3599, **claims: Any) -> str:
    """A token signed with the sandbox's key, carrying exactly ``roles`` (override any claim with ``claims``)."""
    signer = TokenSigner(sandbox.state_dir / "token-signing-key.pem")
    body = {"aud": GRAPH_AUDIENCE, "tid": tenant, "appid": sandbox.client_id, "roles": roles, **claims}
    return signer.issue(body, issuer=f"https://sts.windows.net/{tenant}/", lifetime_s=lifetime_s)


def graph_as(sandbox: SandboxHandle, tenant: str, roles: list[str], **kwargs: Any) -> GraphSession:
    return GraphSession(sandbox, mint(sandbox, tenant, roles, **kwargs))


def assert_error(response: requests.Response, status: int, code: str, message: str | None = None) -> dict[str, Any]:
    """Graph's error body: ``{"error": {"code", "message", "innerError": {"date", "request-id"}}}``."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    if message is not None:
        assert message in error["message"], error["message"]
    inner = error["innerError"]
    assert inner["request-id"] == response.headers["request-id"]
    assert inner["date"]
    return error


def invite(session: GraphSession, email: str, **extra: Any) -> requests.Response:
    return session.post("/v1.0/invitations", json={"invitedUserEmailAddress": email, "inviteRedirectUrl": REDIRECT, **extra})


def users_where(session: GraphSession, odata_filter: str, **params: str) -> list[dict[str, Any]]:
    response = session.get("/v1.0/users", params={"$filter": odata_filter, **params})
    assert response.status_code == 200, response.text
    return response.json()["value"]


def configured_ids(sandbox: SandboxHandle) -> dict[str, str]:
    """Ids of the CONFIGURED tenant's existing objects, read from the admin snapshot."""
    directory = sandbox.tenant_state(CONFIGURED)["directory"]
    guest = next(u for u in directory["users"] if u["mail"] == CONFIGURED_GUEST)
    assignment = next(a for a in directory["roleAssignments"] if a["principalId"] == guest["id"])
    (app_sp,) = directory["servicePrincipals"]
    return {"guest": guest["id"], "assignment": assignment["id"], "sp": app_sp["id"]}


# --- organization --------------------------------------------------------------------------------------
def test_organization_is_a_collection_of_one_whose_id_is_the_tenant(sandbox: SandboxHandle) -> None:
    response = graph(sandbox).get("/v1.0/organization")
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"] == "https://graph.microsoft.com/v1.0/$metadata#organization"
    (org,) = body["value"]
    assert org["id"] == FRESH and org["displayName"] == "Fresh Corp"
    initial = [d for d in org["verifiedDomains"] if d["isInitial"]]
    assert [d["name"] for d in initial] == ["freshcorp.onmicrosoft.com"]


def test_organization_select_returns_only_the_selected_properties(sandbox: SandboxHandle) -> None:
    response = graph(sandbox).get("/v1.0/organization", params={"$select": "displayName,verifiedDomains"})
    (org,) = response.json()["value"]
    assert org["displayName"] == "Fresh Corp" and org["verifiedDomains"][0]["isInitial"] is True
    assert "tenantType" not in org and "countryLetterCode" not in org


# --- users: lookups -------------------------------------------------------------------------------------
def test_user_lookup_by_mail_finds_the_existing_guest(sandbox: SandboxHandle) -> None:
    (user,) = users_where(graph(sandbox, CONFIGURED), f"mail eq '{CONFIGURED_GUEST}'")
    assert user["mail"] == CONFIGURED_GUEST and user["userType"] == "Guest"
    assert user["externalUserState"] == "Accepted" and user["userPrincipalName"] == CONFIGURED_GUEST_UPN


def test_user_lookup_compares_addresses_case_insensitively(sandbox: SandboxHandle) -> None:
    assert len(users_where(graph(sandbox, CONFIGURED), f"mail eq '{CONFIGURED_GUEST.upper()}'")) == 1


def test_user_lookup_by_guest_upn_with_percent_encoded_hash(sandbox: SandboxHandle) -> None:
    session = graph(sandbox, CONFIGURED)
    response = session.get("/v1.0/users", params={"$filter": f"userPrincipalName eq '{CONFIGURED_GUEST_UPN}'"})
    assert response.request.url is not None
    assert "%23EXT%23" in response.request.url  # requests encodes '#', as Graph needs
    assert [u["mail"] for u in response.json()["value"]] == [CONFIGURED_GUEST]


def test_user_lookup_with_or_over_mail_other_mails_proxy_addresses_and_upn(sandbox: SandboxHandle) -> None:
    """Microsoft's existence check (reference §1), as one default query."""

    def existence_check(address: str) -> str:
        upn = f"{address.replace('@', '_')}#EXT#@configured.onmicrosoft.com"
        return (
            f"mail eq '{address}' or otherMails/any(x:x eq '{address}') "
            f"or proxyAddresses/any(x:x eq 'SMTP:{address}') or userPrincipalName eq '{upn}'"
        )

    session = graph(sandbox, CONFIGURED)
    select = {"$select": "id,mail,otherMails,userPrincipalName,userType,externalUserState"}
    (user,) = users_where(session, existence_check(CONFIGURED_GUEST), **select)
    assert user["mail"] == CONFIGURED_GUEST and user["userPrincipalName"] == CONFIGURED_GUEST_UPN
    assert set(user) == {"id", "mail", "otherMails", "userPrincipalName", "userType", "externalUserState"}
    assert users_where(session, existence_check("nobody@mdr.example"), **select) == []


def test_proxy_addresses_lambda_matches_the_smtp_address(sandbox: SandboxHandle) -> None:
    (user,) = users_where(graph(sandbox, CONFIGURED), f"proxyAddresses/any(x:x eq 'SMTP:{CONFIGURED_GUEST}')")
    assert user["proxyAddresses"] == [f"SMTP:{CONFIGURED_GUEST}"]


@pytest.fixture(scope="module")
def contact_collision_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    """A second sandbox whose only guest has its address in otherMails, not mail (a contact collided)."""
    scenario = {
        "replication_lag": "30s",
        "tenants": [
            {
                "id": FRESH,
                "display_name": "Contact Collision Co",
                "initial_domain": "collision.onmicrosoft.com",
                "existing": {"guests": [{"email": "soc@mdr.example", "address_in": "otherMails"}]},
            }
        ],
    }
    handle = start_sandbox(tmp_path_factory.mktemp("collision"), scenario)
    yield handle
    handle.stop()


def test_guest_whose_address_is_only_in_other_mails_is_found_by_the_lambda_only(contact_collision_sandbox: SandboxHandle) -> None:
    session = graph(contact_collision_sandbox, FRESH)
    assert users_where(session, "mail eq 'soc@mdr.example'") == []
    (user,) = users_where(session, "otherMails/any(x:x eq 'soc@mdr.example')")
    assert user["mail"] is None and user["otherMails"] == ["soc@mdr.example"] and user["proxyAddresses"] == []
    assert len(users_where(session, "mail eq 'soc@mdr.example' or otherMails/any(x:x eq 'soc@mdr.example')")) == 1


# --- users: query rules ------------------------------------------------------------------------------------
def test_filter_on_an_unsupported_property_is_request_unsupported_query(sandbox: SandboxHandle) -> None:
    response = graph(sandbox).get("/v1.0/users", params={"$filter": "aboutMe eq 'x'"})
    assert_error(response, 400, "Request_UnsupportedQuery", "aboutMe")


def test_malformed_filter_is_request_bad_request(sandbox: SandboxHandle) -> None:
    response = graph(sandbox).get("/v1.0/users", params={"$filter": "mail eq"})
    assert_error(response, 400, "Request_BadRequest")


def test_ends_with_without_advanced_query_parameters_is_refused(sandbox: SandboxHandle) -> None:
    response = graph(sandbox, CONFIGURED).get("/v1.0/users", params={"$filter": "endsWith(mail,'@soc.expel.io')"})
    assert_error(response, 400, "Request_UnsupportedQuery")


def test_ends_with_needs_the_header_and_count_together(sandbox: SandboxHandle) -> None:
    session = graph(sandbox, CONFIGURED)
    header_only = session.get(
        "/v1.0/users", params={"$filter": "endsWith(mail,'@soc.expel.io')"}, headers={"ConsistencyLevel": "eventual"}
    )
    assert_error(header_only, 400, "Request_UnsupportedQuery")


def test_ends_with_is_an_advanced_query_with_consistency_level_and_count(sandbox: SandboxHandle) -> None:
    response = graph(sandbox, CONFIGURED).get(
        "/v1.0/users",
        params={"$filter": "endsWith(userPrincipalName,'#EXT#@configured.onmicrosoft.com')", "$count": "true"},
        headers={"ConsistencyLevel": "eventual"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.count"] == 1 and [u["mail"] for u in body["value"]] == [CONFIGURED_GUEST]


def test_in_is_a_default_query(sandbox: SandboxHandle) -> None:
    (user,) = users_where(graph(sandbox, CONFIGURED), f"mail in ('nobody@mdr.example', '{CONFIGURED_GUEST}')")
    assert user["mail"] == CONFIGURED_GUEST


def test_not_is_an_advanced_query(sandbox: SandboxHandle) -> None:
    session = graph(sandbox, CONFIGURED)
    params = {"$filter": "not(userType eq 'Member')"}
    assert_error(session.get("/v1.0/users", params=params), 400, "Request_UnsupportedQuery")
    advanced = session.get("/v1.0/users", params={**params, "$count": "true"}, headers={"ConsistencyLevel": "eventual"})
    assert advanced.status_code == 200 and advanced.json()["@odata.count"] == 1


def test_count_without_consistency_level_is_refused(sandbox: SandboxHandle) -> None:
    response = graph(sandbox, CONFIGURED).get("/v1.0/users", params={"$count": "true"})
    assert_error(response, 400, "Request_BadRequest", "$count is not currently supported.")


def test_paging_with_top_follows_next_link_to_the_end(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    invited = {invite(session, f"pager{i}@mdr.example").json()["invitedUser"]["id"] for i in range(3)}
    sandbox.advance(REPLICATION)
    seen: list[str] = []
    pages = 0
    body = session.get("/v1.0/users", params={"$top": "1", "$filter": "userType eq 'Guest'"}).json()
    while True:
        pages += 1
        assert len(body["value"]) == 1
        seen.extend(u["id"] for u in body["value"])
        if "@odata.nextLink" not in body:
            break
        assert body["@odata.nextLink"].startswith(sandbox.base_url("graph") + "/v1.0/users?")
        body = session.get(body["@odata.nextLink"]).json()
    assert pages == 3 and sorted(seen) == sorted(invited)


def test_get_user_by_id_and_by_upn(sandbox: SandboxHandle) -> None:
    session = graph(sandbox, CONFIGURED)
    guest_id = configured_ids(sandbox)["guest"]
    by_id = session.get(f"/v1.0/users/{guest_id}")
    assert by_id.status_code == 200 and by_id.json()["mail"] == CONFIGURED_GUEST
    assert by_id.json()["@odata.context"] == "https://graph.microsoft.com/v1.0/$metadata#users/$entity"
    by_upn = session.get(f"/v1.0/users/{CONFIGURED_GUEST_UPN.replace('#', '%23')}")
    assert by_upn.status_code == 200 and by_upn.json()["id"] == guest_id


def test_unknown_user_id_is_request_resource_not_found(sandbox: SandboxHandle) -> None:
    missing = "deadbeef-0000-4000-8000-000000000000"
    response = graph(sandbox).get(f"/v1.0/users/{missing}")
    assert_error(response, 404, "Request_ResourceNotFound", f"Resource '{missing}' {NOT_FOUND_MESSAGE}")


# --- invitations ---------------------------------------------------------------------------------------------
def test_invitation_is_201_with_the_invitation_shape(sandbox: SandboxHandle) -> None:
    response = invite(graph(sandbox), "analyst@mdr.example", invitedUserDisplayName="MDR Analyst")
    assert response.status_code == 201
    body = response.json()
    assert body["@odata.context"] == "https://graph.microsoft.com/v1.0/$metadata#invitations/$entity"
    assert body["status"] == "PendingAcceptance"
    assert body["invitedUserEmailAddress"] == "analyst@mdr.example" and body["invitedUserDisplayName"] == "MDR Analyst"
    assert body["invitedUserType"] == "Guest" and body["sendInvitationMessage"] is False
    assert body["inviteRedirectUrl"] == REDIRECT and body["resetRedemption"] is False
    assert body["inviteRedeemUrl"].startswith("https://login.microsoftonline.com/redeem?rd=")
    assert body["invitedUser"]["id"] and body["id"] != body["invitedUser"]["id"]  # invitation id is not the user id


def test_invited_guest_is_invisible_until_replication_then_pending_acceptance(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    user_id = invite(session, "analyst@mdr.example").json()["invitedUser"]["id"]
    query = "mail eq 'analyst@mdr.example'"
    assert users_where(session, query) == []
    assert_error(session.get(f"/v1.0/users/{user_id}"), 404, "Request_ResourceNotFound")
    (state,) = sandbox.tenant_state(FRESH)["directory"]["users"]
    assert state["id"] == user_id and state["_visible"] is False
    sandbox.advance(REPLICATION)
    (user,) = users_where(session, query)
    assert user["id"] == user_id and user["userType"] == "Guest"
    assert user["externalUserState"] == "PendingAcceptance"
    assert user["userPrincipalName"] == "analyst_mdr.example#EXT#@freshcorp.onmicrosoft.com"


def test_invited_guest_is_accepted_after_the_tenant_redeem_delay(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    user_id = invite(session, "analyst@mdr.example").json()["invitedUser"]["id"]
    sandbox.advance("11m")  # default redeem_after is 10m
    user = session.get(f"/v1.0/users/{user_id}").json()
    assert user["externalUserState"] == "Accepted" and user["externalUserStateChangeDateTime"]


def test_reinviting_the_same_address_returns_the_same_user_and_creates_none(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    first, second = invite(session, "analyst@mdr.example"), invite(session, "analyst@mdr.example")
    assert first.status_code == second.status_code == 201
    assert first.json()["invitedUser"]["id"] == second.json()["invitedUser"]["id"]
    assert first.json()["id"] != second.json()["id"]
    assert len(sandbox.tenant_state(FRESH)["directory"]["users"]) == 1


def test_inviting_an_existing_accepted_guest_returns_it_as_completed(sandbox: SandboxHandle) -> None:
    response = invite(graph(sandbox, CONFIGURED), CONFIGURED_GUEST)
    assert response.status_code == 201
    assert response.json()["invitedUser"]["id"] == configured_ids(sandbox)["guest"]
    assert response.json()["status"] == "Completed"
    assert len(sandbox.tenant_state(CONFIGURED)["directory"]["users"]) == 1


def test_member_invitation_creates_a_member_user(sandbox: SandboxHandle) -> None:
    response = invite(graph(sandbox), "analyst@mdr.example", invitedUserType="Member")
    assert response.status_code == 201 and response.json()["invitedUserType"] == "Member"
    (user,) = sandbox.tenant_state(FRESH)["directory"]["users"]
    assert (user["userType"], user["externalUserState"]) == ("Member", "PendingAcceptance")


@pytest.mark.parametrize("email", ["not-an-email", "analyst@localhost", "ana(lyst)@mdr.example", ".analyst@mdr.example", "analyst-@mdr.example"])
def test_invalid_email_address_is_400(sandbox: SandboxHandle, email: str) -> None:
    assert_error(invite(graph(sandbox), email), 400, "BadRequest", email)
    assert sandbox.tenant_state(FRESH)["directory"]["users"] == []


@pytest.mark.parametrize("missing", ["invitedUserEmailAddress", "inviteRedirectUrl"])
def test_invitation_missing_a_required_property_is_400(sandbox: SandboxHandle, missing: str) -> None:
    body = {"invitedUserEmailAddress": "analyst@mdr.example", "inviteRedirectUrl": REDIRECT}
    del body[missing]
    assert_error(graph(sandbox).post("/v1.0/invitations", json=body), 400, "BadRequest", missing)


def test_invitation_body_that_is_not_json_is_400(sandbox: SandboxHandle) -> None:
    response = graph(sandbox).post("/v1.0/invitations", data="{not json", headers={"Content-Type": "application/json"})
    assert_error(response, 400, "BadRequest")


def test_invitation_without_user_invite_all_is_403(sandbox: SandboxHandle) -> None:
    response = invite(graph(sandbox, PARTIAL), "analyst@mdr.example")
    # The invitation manager has its own 403 code and message (reference §1).
    assert_error(response, 403, "Unauthorized", "ControllerName=MSGraphInviteAPI")
    assert sandbox.tenant_state(PARTIAL)["directory"]["users"] == []


# --- directory role assignments ----------------------------------------------------------------------------
def _assign(session: GraphSession, principal_id: str, role: str = GLOBAL_READER) -> requests.Response:
    body = {"@odata.type": "#microsoft.graph.unifiedRoleAssignment", "roleDefinitionId": role, "principalId": principal_id, "directoryScopeId": "/"}
    return session.post(ROLE_ASSIGNMENTS, json=body)


def test_role_definitions_contain_global_reader_with_id_equal_to_template_id(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    definitions = session.get(ROLE_DEFINITIONS).json()["value"]
    reader = next(d for d in definitions if d["displayName"] == "Global Reader")
    assert reader["id"] == reader["templateId"] == GLOBAL_READER and reader["isBuiltIn"] is True
    assert all(d["id"] == d["templateId"] for d in definitions)
    one = session.get(f"{ROLE_DEFINITIONS}/{GLOBAL_READER}")
    assert one.status_code == 200 and one.json()["displayName"] == "Global Reader"


def test_assigning_a_role_to_an_unreplicated_guest_is_404_then_201(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    guest_id = invite(session, "analyst@mdr.example").json()["invitedUser"]["id"]
    assert_error(_assign(session, guest_id), 404, "Request_ResourceNotFound", f"Resource '{guest_id}' {NOT_FOUND_MESSAGE}")
    sandbox.advance(REPLICATION)
    created = _assign(session, guest_id)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["@odata.context"] == "https://graph.microsoft.com/v1.0/$metadata#roleManagement/directory/roleAssignments/$entity"
    assert (body["roleDefinitionId"], body["principalId"], body["directoryScopeId"]) == (GLOBAL_READER, guest_id, "/")
    assert body["id"]


def test_duplicate_role_assignment_is_400_conflicting_object(sandbox: SandboxHandle) -> None:
    session = graph(sandbox, CONFIGURED)
    response = _assign(session, configured_ids(sandbox)["guest"])
    assert_error(response, 400, "Request_BadRequest", "A conflicting object with one or more of the specified property values is present in the directory.")


def test_role_assignment_with_an_unknown_role_definition_is_404(sandbox: SandboxHandle) -> None:
    response = _assign(graph(sandbox, CONFIGURED), configured_ids(sandbox)["guest"], role="00000000-1111-4222-8333-444444444444")
    assert_error(response, 404, "Request_ResourceNotFound")


def test_role_assignment_with_a_malformed_principal_id_is_400(sandbox: SandboxHandle) -> None:
    assert_error(_assign(graph(sandbox), "not-a-guid"), 400, "Request_BadRequest", "principalId")


def test_new_role_assignment_is_listed_by_principal_only_after_replication(sandbox: SandboxHandle) -> None:
    session = graph(sandbox, CONFIGURED)
    guest_id = configured_ids(sandbox)["guest"]
    created = _assign(session, guest_id, role=SECURITY_READER)
    assert created.status_code == 201

    def listed() -> set[str]:
        response = session.get(ROLE_ASSIGNMENTS, params={"$filter": f"principalId eq '{guest_id}'"})
        assert response.status_code == 200
        assert all(a["principalId"] == guest_id and a["directoryScopeId"] == "/" for a in response.json()["value"])
        return {a["roleDefinitionId"] for a in response.json()["value"]}

    assert listed() == {GLOBAL_READER}
    assert_error(session.get(f"{ROLE_ASSIGNMENTS}/{created.json()['id']}"), 404, "Request_ResourceNotFound")
    sandbox.advance(REPLICATION)
    assert listed() == {GLOBAL_READER, SECURITY_READER}


def test_role_assignment_get_by_id_then_delete(sandbox: SandboxHandle) -> None:
    session = graph(sandbox, CONFIGURED)
    ids = configured_ids(sandbox)
    got = session.get(f"{ROLE_ASSIGNMENTS}/{ids['assignment']}")
    assert got.status_code == 200
    assert (got.json()["principalId"], got.json()["roleDefinitionId"]) == (ids["guest"], GLOBAL_READER)
    deleted = session.delete(f"{ROLE_ASSIGNMENTS}/{ids['assignment']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(session.get(f"{ROLE_ASSIGNMENTS}/{ids['assignment']}"), 404, "Request_ResourceNotFound")
    assert_error(session.delete(f"{ROLE_ASSIGNMENTS}/{ids['assignment']}"), 404, "Request_ResourceNotFound")


# --- cross-tenant access partners ----------------------------------------------------------------------------
def test_missing_partner_is_404(sandbox: SandboxHandle) -> None:
    assert_error(graph(sandbox).get(f"{PARTNERS}/{PROVIDER_TENANT}"), 404, "Request_ResourceNotFound")


def test_creating_a_partner_is_201_with_the_full_shape(sandbox: SandboxHandle) -> None:
    body = {"tenantId": PROVIDER_TENANT, "inboundTrust": {"isMfaAccepted": True}}
    response = graph(sandbox).post(PARTNERS, json=body)
    assert response.status_code == 201, response.text
    partner = response.json()
    assert partner["tenantId"] == PROVIDER_TENANT
    assert partner["inboundTrust"] == {"isMfaAccepted": True, "isCompliantDeviceAccepted": False, "isHybridAzureADJoinedDeviceAccepted": False}
    assert partner["automaticUserConsentSettings"] == {"inboundAllowed": None, "outboundAllowed": None}
    for inherited in ("b2bCollaborationInbound", "b2bCollaborationOutbound", "b2bDirectConnectInbound", "b2bDirectConnectOutbound"):
        assert partner[inherited] is None
    assert partner["isServiceProvider"] is False and partner["isInMultiTenantOrganization"] is False


def test_creating_an_existing_partner_is_409_same_key_value(sandbox: SandboxHandle) -> None:
    response = graph(sandbox, CONFIGURED).post(PARTNERS, json={"tenantId": PROVIDER_TENANT})
    error = assert_error(
        response, 409, "Request_MultipleObjectsWithSameKeyValue", "Another object with the same value for property tenantId already exists."
    )
    assert error["details"][0]["code"] == "ConflictingObjects"


def test_creating_a_partner_twice_before_replication_is_409(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    assert session.post(PARTNERS, json={"tenantId": PROVIDER_TENANT}).status_code == 201
    assert_error(session.post(PARTNERS, json={"tenantId": PROVIDER_TENANT}), 409, "Request_MultipleObjectsWithSameKeyValue")


def test_new_partner_is_invisible_until_replication(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    assert session.post(PARTNERS, json={"tenantId": PROVIDER_TENANT}).status_code == 201
    assert_error(session.get(f"{PARTNERS}/{PROVIDER_TENANT}"), 404, "Request_ResourceNotFound")
    assert session.get(PARTNERS).json()["value"] == []
    sandbox.advance(REPLICATION)
    assert session.get(f"{PARTNERS}/{PROVIDER_TENANT}").status_code == 200
    assert [p["tenantId"] for p in session.get(PARTNERS).json()["value"]] == [PROVIDER_TENANT]


def test_partial_patch_is_204_and_leaves_other_properties_untouched(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    trust = {"isMfaAccepted": True, "isCompliantDeviceAccepted": False, "isHybridAzureADJoinedDeviceAccepted": False}
    session.post(PARTNERS, json={"tenantId": PROVIDER_TENANT, "inboundTrust": trust})
    sandbox.advance(REPLICATION)
    response = session.patch(f"{PARTNERS}/{PROVIDER_TENANT}", json={"automaticUserConsentSettings": {"inboundAllowed": True}})
    assert response.status_code == 204 and response.content == b""
    partner = session.get(f"{PARTNERS}/{PROVIDER_TENANT}").json()
    assert partner["automaticUserConsentSettings"] == {"inboundAllowed": True, "outboundAllowed": None}
    assert partner["inboundTrust"] == trust


def test_patch_with_a_wrong_case_property_is_400_invalid_property(sandbox: SandboxHandle) -> None:
    body = {"b2BCollaborationInbound": {"usersAndGroups": {"accessType": "allowed"}}}
    response = graph(sandbox, CONFIGURED).patch(f"{PARTNERS}/{PROVIDER_TENANT}", json=body)
    assert_error(response, 400, "Request_BadRequest", "Invalid property 'b2BCollaborationInbound'")


def test_patch_cannot_change_the_tenant_id(sandbox: SandboxHandle) -> None:
    response = graph(sandbox, CONFIGURED).patch(f"{PARTNERS}/{PROVIDER_TENANT}", json={"tenantId": NEW_PARTNER})
    assert_error(response, 400, "Request_BadRequest", "tenantId")


def test_delete_partner_is_204_and_it_is_gone(sandbox: SandboxHandle) -> None:
    session = graph(sandbox, CONFIGURED)
    assert session.get(f"{PARTNERS}/{PROVIDER_TENANT}").json()["inboundTrust"]["isMfaAccepted"] is True
    response = session.delete(f"{PARTNERS}/{PROVIDER_TENANT}")
    assert response.status_code == 204 and response.content == b""
    assert_error(session.get(f"{PARTNERS}/{PROVIDER_TENANT}"), 404, "Request_ResourceNotFound")


def test_read_only_policy_token_reads_partners_but_cannot_write_them(sandbox: SandboxHandle) -> None:
    session = graph_as(sandbox, CONFIGURED, ["Policy.Read.All"])
    assert session.get(f"{PARTNERS}/{PROVIDER_TENANT}").status_code == 200
    assert session.get(PARTNERS).status_code == 200
    assert_error(session.post(PARTNERS, json={"tenantId": NEW_PARTNER}), 403, "Authorization_RequestDenied")
    body = {"automaticUserConsentSettings": {"inboundAllowed": False}}
    assert_error(session.patch(f"{PARTNERS}/{PROVIDER_TENANT}", json=body), 403, "Authorization_RequestDenied")
    assert_error(session.delete(f"{PARTNERS}/{PROVIDER_TENANT}"), 403, "Authorization_RequestDenied")
    (partner,) = sandbox.tenant_state(CONFIGURED)["directory"]["partners"]
    assert partner["automaticUserConsentSettings"]["inboundAllowed"] is True


# --- service principals and consent verification ----------------------------------------------------------
def _app_service_principal(sandbox: SandboxHandle, session: GraphSession) -> dict[str, Any]:
    response = session.get("/v1.0/servicePrincipals", params={"$filter": f"appId eq '{sandbox.client_id}'", "$select": "id,appId,displayName"})
    assert response.status_code == 200
    (sp,) = response.json()["value"]
    return sp


def _granted_role_ids(session: GraphSession, sp_id: str) -> set[str]:
    response = session.get(f"/v1.0/servicePrincipals/{sp_id}/appRoleAssignments")
    assert response.status_code == 200
    assignments = response.json()["value"]
    assert all(a["principalId"] == sp_id and a["principalType"] == "ServicePrincipal" for a in assignments)
    return {a["appRoleId"] for a in assignments}


def test_app_service_principal_is_found_by_app_id(sandbox: SandboxHandle) -> None:
    sp = _app_service_principal(sandbox, graph(sandbox))
    assert sp["appId"] == sandbox.client_id and sp["displayName"] == "Expel Microsoft 365 Integration"


def test_app_role_assignments_list_every_consented_role_on_each_resource(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    sp = _app_service_principal(sandbox, session)
    response = session.get(f"/v1.0/servicePrincipals/{sp['id']}/appRoleAssignments")
    expected = {find_permission(p)[1] for p in APP_PERMISSIONS}  # type: ignore[index]
    assert _granted_role_ids(session, sp["id"]) == expected
    by_resource = {a["resourceDisplayName"] for a in response.json()["value"]}
    assert by_resource == {GRAPH.display_name, EXCHANGE.display_name, MANAGEMENT.display_name}
    graph_sp = session.get(f"/v1.0/servicePrincipals(appId='{GRAPH.app_id}')").json()
    graph_roles = {a["appRoleId"] for a in response.json()["value"] if a["resourceId"] == graph_sp["id"]}
    assert GRAPH.app_roles["User.Invite.All"] in graph_roles and EXCHANGE.app_roles["Exchange.ManageAsApp"] not in graph_roles


def test_partial_consent_lacks_user_invite_all_and_activity_feed_read(sandbox: SandboxHandle) -> None:
    session = graph(sandbox, PARTIAL)
    granted = _granted_role_ids(session, _app_service_principal(sandbox, session)["id"])
    assert GRAPH.app_roles["User.Invite.All"] not in granted
    assert MANAGEMENT.app_roles["ActivityFeed.Read"] not in granted
    assert GRAPH.app_roles["User.Read.All"] in granted and EXCHANGE.app_roles["Exchange.ManageAsApp"] in granted


def test_service_principal_by_app_id_key_form(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    response = session.get(f"/v1.0/servicePrincipals(appId='{sandbox.client_id}')")
    assert response.status_code == 200
    assert response.json()["id"] == _app_service_principal(sandbox, session)["id"]
    assert response.json()["@odata.context"] == "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals/$entity"


def test_unknown_service_principal_is_404(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    assert_error(session.get("/v1.0/servicePrincipals(appId='deadbeef-0000-4000-8000-000000000000')"), 404, "Request_ResourceNotFound")
    assert_error(session.get("/v1.0/servicePrincipals/deadbeef-0000-4000-8000-000000000000/appRoleAssignments"), 404, "Request_ResourceNotFound")


# --- authentication ----------------------------------------------------------------------------------------
def test_request_without_a_token_is_401(sandbox: SandboxHandle) -> None:
    response = GraphSession(sandbox, None).get("/v1.0/organization")
    assert_error(response, 401, "InvalidAuthenticationToken", "Access token is empty.")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_is_401(sandbox: SandboxHandle) -> None:
    response = graph_as(sandbox, FRESH, ["Organization.Read.All"], lifetime_s=-10).get("/v1.0/organization")
    assert_error(response, 401, "InvalidAuthenticationToken", "expired")


def test_token_for_another_audience_is_401(sandbox: SandboxHandle) -> None:
    exchange_token = sandbox.token(FRESH, EXCHANGE_AUDIENCE)
    response = GraphSession(sandbox, exchange_token).get("/v1.0/organization")
    assert_error(response, 401, "InvalidAuthenticationToken", "Invalid audience")


def test_token_signed_by_another_key_is_401(sandbox: SandboxHandle, tmp_path: Path) -> None:
    forged = TokenSigner(tmp_path / "other-key.pem").issue(
        {"aud": GRAPH_AUDIENCE, "tid": FRESH, "appid": sandbox.client_id, "roles": ["Organization.Read.All"]},
        issuer=f"https://sts.windows.net/{FRESH}/",
    )
    assert_error(GraphSession(sandbox, forged).get("/v1.0/organization"), 401, "InvalidAuthenticationToken", "signature")


def test_garbage_token_is_401(sandbox: SandboxHandle) -> None:
    response = GraphSession(sandbox, "not-a-jwt").get("/v1.0/organization")
    assert_error(response, 401, "InvalidAuthenticationToken", "CompactToken parsing failed")


# (operation, method, path, body); ``{guest}``, ``{assignment}``, ``{sp}`` are CONFIGURED's objects.
OPERATIONS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "list_organization": ("GET", "/v1.0/organization", None),
    "list_users": ("GET", "/v1.0/users", None),
    "get_user": ("GET", "/v1.0/users/{guest}", None),
    "create_invitation": ("POST", "/v1.0/invitations", {"invitedUserEmailAddress": "analyst@mdr.example", "inviteRedirectUrl": REDIRECT}),
    "list_role_definitions": ("GET", ROLE_DEFINITIONS, None),
    "get_role_definition": ("GET", f"{ROLE_DEFINITIONS}/{GLOBAL_READER}", None),
    "list_role_assignments": ("GET", ROLE_ASSIGNMENTS, None),
    "get_role_assignment": ("GET", f"{ROLE_ASSIGNMENTS}/{{assignment}}", None),
    "create_role_assignment": ("POST", ROLE_ASSIGNMENTS, {"roleDefinitionId": SECURITY_READER, "principalId": "{guest}", "directoryScopeId": "/"}),
    "delete_role_assignment": ("DELETE", f"{ROLE_ASSIGNMENTS}/{{assignment}}", None),
    "list_partners": ("GET", PARTNERS, None),
    "get_partner": ("GET", f"{PARTNERS}/{PROVIDER_TENANT}", None),
    "create_partner": ("POST", PARTNERS, {"tenantId": NEW_PARTNER}),
    "update_partner": ("PATCH", f"{PARTNERS}/{PROVIDER_TENANT}", {"automaticUserConsentSettings": {"outboundAllowed": True}}),
    "delete_partner": ("DELETE", f"{PARTNERS}/{PROVIDER_TENANT}", None),
    "list_service_principals": ("GET", "/v1.0/servicePrincipals", None),
    "get_service_principal": ("GET", "/v1.0/servicePrincipals/{sp}", None),
    "list_app_role_assignments": ("GET", "/v1.0/servicePrincipals/{sp}/appRoleAssignments", None),
    "find_tenant_information": ("GET", f"/v1.0/tenantRelationships/findTenantInformationByTenantId(tenantId='{CONFIGURED}')", None),
}

# operation -> (a permission that suffices, the success status, a plausible permission that does not suffice)
LEAST_PRIVILEGED: dict[str, tuple[str, int, str]] = {
    "list_organization": ("Directory.Read.All", 200, "User.Read.All"),
    "list_users": ("User.Read.All", 200, "User.Invite.All"),
    "get_user": ("User.Read.All", 200, "Application.Read.All"),
    "create_invitation": ("User.Invite.All", 201, "User.Read.All"),
    "list_role_definitions": ("RoleManagement.Read.Directory", 200, "User.Read.All"),
    "get_role_definition": ("RoleManagement.Read.Directory", 200, "Policy.Read.All"),
    "list_role_assignments": ("RoleManagement.Read.Directory", 200, "User.Read.All"),
    "get_role_assignment": ("RoleManagement.Read.Directory", 200, "Application.Read.All"),
    "create_role_assignment": ("RoleManagement.ReadWrite.Directory", 201, "RoleManagement.Read.Directory"),
    "delete_role_assignment": ("RoleManagement.ReadWrite.Directory", 204, "Directory.Read.All"),
    "list_partners": ("Policy.Read.All", 200, "Directory.Read.All"),
    "get_partner": ("Policy.Read.All", 200, "User.Read.All"),
    "create_partner": ("Policy.ReadWrite.CrossTenantAccess", 201, "Policy.Read.All"),
    "update_partner": ("Policy.ReadWrite.CrossTenantAccess", 204, "Policy.Read.All"),
    "delete_partner": ("Policy.ReadWrite.CrossTenantAccess", 204, "Policy.Read.All"),
    "list_service_principals": ("Application.Read.All", 200, "User.Read.All"),
    "get_service_principal": ("Application.Read.All", 200, "Policy.Read.All"),
    "list_app_role_assignments": ("Application.Read.All", 200, "RoleManagement.Read.Directory"),
    "find_tenant_information": ("CrossTenantInformation.ReadBasic.All", 200, "Directory.Read.All"),
}


def _call(sandbox: SandboxHandle, session: GraphSession, operation: str) -> requests.Response:
    method, path, body = OPERATIONS[operation]
    ids = configured_ids(sandbox)
    fill = lambda text: text.format(**ids)  # noqa: E731
    json_body = {k: fill(v) if isinstance(v, str) else v for k, v in body.items()} if body is not None else None
    return session.request(method, fill(path), json=json_body)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_token_without_roles_is_403_on_every_operation(sandbox: SandboxHandle, operation: str) -> None:
    response = _call(sandbox, graph_as(sandbox, CONFIGURED, []), operation)
    if operation == "create_invitation":
        assert_error(response, 403, "Unauthorized", "Insufficient privileges to perform requested operation")
    else:
        assert_error(response, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


@pytest.mark.parametrize("operation", sorted(LEAST_PRIVILEGED))
def test_each_operation_accepts_its_least_privileged_permission(sandbox: SandboxHandle, operation: str) -> None:
    permission, status, _ = LEAST_PRIVILEGED[operation]
    response = _call(sandbox, graph_as(sandbox, CONFIGURED, [permission]), operation)
    assert response.status_code == status, response.text


@pytest.mark.parametrize("operation", sorted(LEAST_PRIVILEGED))
def test_each_operation_refuses_an_unrelated_permission(sandbox: SandboxHandle, operation: str) -> None:
    _, _, insufficient = LEAST_PRIVILEGED[operation]
    response = _call(sandbox, graph_as(sandbox, CONFIGURED, [insufficient]), operation)
    assert_error(response, 403, "Unauthorized" if operation == "create_invitation" else "Authorization_RequestDenied")


def test_organization_also_accepts_organization_read_all(sandbox: SandboxHandle) -> None:
    """The app asks for Organization.Read.All; newer docs list it for GET /organization (reference §4, §11.8)."""
    assert graph_as(sandbox, FRESH, ["Organization.Read.All"]).get("/v1.0/organization").status_code == 200


# --- faults, request ids and the request log ----------------------------------------------------------------
def test_throttle_fault_is_429_with_retry_after_then_success(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    sandbox.add_fault(service="graph", kind="throttle", retry_after="2s", count=1)
    throttled = session.get("/v1.0/organization")
    error = assert_error(throttled, 429, "TooManyRequests", "Please retry again later.")
    assert throttled.headers["Retry-After"] == "2"
    assert error["innerError"]["status"] == "429"
    assert session.get("/v1.0/organization").status_code == 200


def test_unavailable_fault_is_503_with_retry_after(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    sandbox.add_fault(service="graph", kind="unavailable", retry_after="5s", count=1)
    response = invite(session, "analyst@mdr.example")
    assert_error(response, 503, "serviceNotAvailable")
    assert response.headers["Retry-After"] == "5"
    assert sandbox.tenant_state(FRESH)["directory"]["users"] == []  # a refused request changes nothing
    assert invite(session, "analyst@mdr.example").status_code == 201


def test_request_log_records_method_path_status_tenant_app_and_fault(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    sandbox.add_fault(service="graph", kind="throttle", method="POST", retry_after="1s", count=1)
    first, second = invite(session, "analyst@mdr.example"), invite(session, "analyst@mdr.example")
    assert (first.status_code, second.status_code) == (429, 201)
    faulted, served = sandbox.request_log(service="graph", method="POST")
    assert (faulted["method"], faulted["path"], faulted["status"]) == ("POST", "/v1.0/invitations", 429)
    assert faulted["tenant_id"] == FRESH and faulted["fault"].startswith("throttle#")
    assert faulted["request_id"] == first.headers["request-id"]
    assert (served["status"], served["tenant_id"], served["app_id"], served["fault"]) == (201, FRESH, sandbox.client_id, None)
    assert served["operation"] == "create_invitation" and served["request_id"] == second.headers["request-id"]


def test_client_request_id_is_echoed_in_the_header_and_the_error(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    session.headers["client-request-id"] = "5f1d6c1e-0000-4000-8000-000000000001"
    response = session.get("/v1.0/users/deadbeef-0000-4000-8000-000000000000")
    error = assert_error(response, 404, "Request_ResourceNotFound")
    assert response.headers["client-request-id"] == error["innerError"]["client-request-id"] == "5f1d6c1e-0000-4000-8000-000000000001"


def test_every_response_carries_a_distinct_request_id(sandbox: SandboxHandle) -> None:
    session = graph(sandbox)
    ids = {session.get("/v1.0/organization").headers["request-id"] for _ in range(3)}
    assert len(ids) == 3


def test_unknown_path_is_501_not_emulated_in_graph_error_format(sandbox: SandboxHandle) -> None:
    response = graph(sandbox).get("/v1.0/groups")
    assert_error(response, 501, "NotEmulated", "GET /v1.0/groups is not emulated")
