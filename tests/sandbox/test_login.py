"""Entra login as msal and a browser see it: discovery, tokens by secret and certificate, consent."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from clients.http import VerifiedSession
from sandbox.core.catalog import DIRECTORY_ROLES
from sandbox.core.tls import generate_rsa_key, self_signed_certificate
from tests.conftest import FRESH, LATE_CONSENT, NEVER_CONSENTS, PARTIAL, REFUSES
from tests.sandbox_harness import SandboxHandle

GRAPH = "https://graph.microsoft.com/.default"


def _token_endpoint(sandbox: SandboxHandle, tenant: str) -> str:
    return f"{sandbox.base_url('login')}/{tenant}/oauth2/v2.0/token"


def _post_token(sandbox: SandboxHandle, tenant: str, **form: str):
    body = {"grant_type": "client_credentials", "client_id": sandbox.client_id, "scope": GRAPH, **form}
    return sandbox.session().post(_token_endpoint(sandbox, tenant), data=body, timeout=10)


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


# --- discovery --------------------------------------------------------------------------------------
@pytest.mark.parametrize("tenant_ref", [FRESH, "freshcorp.onmicrosoft.com"])
def test_discovery_names_the_tenant_by_guid_whatever_the_reference(sandbox: SandboxHandle, tenant_ref: str) -> None:
    response = sandbox.session().get(f"{sandbox.base_url('login')}/{tenant_ref}/v2.0/.well-known/openid-configuration")
    assert response.status_code == 200
    document = response.json()
    assert document["token_endpoint"] == f"{sandbox.base_url('login')}/{FRESH}/oauth2/v2.0/token"
    assert document["issuer"].endswith(f"/{FRESH}/v2.0")
    assert document["cloud_instance_name"] == "microsoftonline.com"
    assert response.headers["Cache-Control"] == "max-age=86400, private"


def test_discovery_of_an_unknown_tenant_is_aadsts90002(sandbox: SandboxHandle) -> None:
    response = sandbox.session().get(f"{sandbox.base_url('login')}/nosuch.onmicrosoft.com/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_tenant"
    assert body["error_codes"] == [90002]
    assert body["error_description"].startswith("AADSTS90002: Tenant 'nosuch.onmicrosoft.com' not found.")
    assert "Trace ID:" in body["error_description"] and body["trace_id"] and body["correlation_id"]


@pytest.mark.parametrize(
    ("tenant_ref", "code"),
    [("not a tenant!", 900023), ("00000000-0000-0000-0000-000000000000", 90002)],
)
def test_discovery_rejects_malformed_and_empty_tenant_identifiers(sandbox: SandboxHandle, tenant_ref: str, code: int) -> None:
    response = sandbox.session().get(f"{sandbox.base_url('login')}/{tenant_ref}/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    assert response.json()["error_codes"] == [code]


def test_msal_refuses_an_unknown_tenant_at_construction(sandbox: SandboxHandle) -> None:
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        sandbox.msal_app("nosuch.onmicrosoft.com")


# --- tokens -------------------------------------------------------------------------------------------
def test_msal_gets_a_signed_token_carrying_tenant_app_and_granted_roles(sandbox: SandboxHandle) -> None:
    result = sandbox.msal_app(FRESH).acquire_token_for_client(scopes=[GRAPH])
    assert result["token_type"] == "Bearer" and result["expires_in"] > 300
    jwks = sandbox.session().get(f"{sandbox.base_url('login')}/{FRESH}/discovery/v2.0/keys").json()
    key = jwt.PyJWK(jwks["keys"][0])
    claims = jwt.decode(result["access_token"], key.key, algorithms=["RS256"], audience="https://graph.microsoft.com")
    assert claims["tid"] == FRESH
    assert claims["appid"] == sandbox.client_id
    assert {"User.Invite.All", "RoleManagement.ReadWrite.Directory", "Policy.ReadWrite.CrossTenantAccess"} <= set(claims["roles"])
    assert DIRECTORY_ROLES["Exchange Administrator"] in claims["wids"]


@pytest.mark.parametrize(
    ("resource", "role"),
    [("https://outlook.office365.com", "Exchange.ManageAsApp"), ("https://manage.office.com", "ActivityFeed.Read")],
)
def test_each_resource_token_carries_only_that_resources_roles(sandbox: SandboxHandle, resource: str, role: str) -> None:
    claims = _claims(sandbox.token(FRESH, resource))
    assert claims["aud"] == resource
    assert claims["roles"] == [role]


def test_msal_serves_the_second_request_from_its_cache(sandbox: SandboxHandle) -> None:
    app = sandbox.msal_app(FRESH)
    first = app.acquire_token_for_client(scopes=[GRAPH])
    second = app.acquire_token_for_client(scopes=[GRAPH])
    assert first["token_source"] == "identity_provider" and second["token_source"] == "cache"
    assert len(sandbox.request_log(service="login", method="POST")) == 1


def _certificate_credential(sandbox: SandboxHandle, with_thumbprint: bool) -> dict[str, str]:
    files = sandbox.app_certificate()
    pem = Path(files["cert"]).read_text()
    credential = {"private_key": Path(files["key"]).read_text()}
    if with_thumbprint:
        credential["thumbprint"] = x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA1()).hex()
    else:
        credential["public_certificate"] = pem
    return credential


@pytest.mark.parametrize("with_thumbprint", [True, False], ids=["RS256-x5t", "PS256-x5t#S256"])
def test_msal_gets_a_token_with_a_certificate_assertion(sandbox: SandboxHandle, with_thumbprint: bool) -> None:
    app = sandbox.msal_app(FRESH, credential=_certificate_credential(sandbox, with_thumbprint))
    result = app.acquire_token_for_client(scopes=[GRAPH])
    assert "access_token" in result, result
    assert _claims(result["access_token"])["appidacr"] == "2"


def test_an_assertion_signed_by_an_unregistered_certificate_is_aadsts700027(sandbox: SandboxHandle, tmp_path) -> None:
    key = generate_rsa_key()
    cert = self_signed_certificate(key, "intruder")
    from cryptography.hazmat.primitives import serialization

    credential = {
        "private_key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),
    }
    result = sandbox.msal_app(FRESH, credential=credential).acquire_token_for_client(scopes=[GRAPH])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]


def test_an_assertion_for_another_audience_is_refused(sandbox: SandboxHandle) -> None:
    files = sandbox.app_certificate()
    cert = x509.load_pem_x509_certificate(Path(files["cert"]).read_bytes())
    now = int(time.time())
    assertion = jwt.encode(
        {"aud": "https://example.com/token", "iss": sandbox.client_id, "sub": sandbox.client_id, "exp": now + 600, "nbf": now, "jti": str(uuid.uuid4())},
        Path(files["key"]).read_text(),
        algorithm="RS256",
        headers={"x5t": jwt.utils.base64url_encode(cert.fingerprint(hashes.SHA1())).decode()},
    )
    response = _post_token(
        sandbox, FRESH, client_assertion=assertion, client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )
    assert response.status_code == 400
    assert response.json()["error_codes"] == [50027]


def test_a_wrong_secret_is_aadsts7000215(sandbox: SandboxHandle) -> None:
    result = sandbox.msal_app(FRESH, credential="not-the-secret").acquire_token_for_client(scopes=[GRAPH])
    assert (result["error"], result["error_codes"]) == ("invalid_client", [7000215])
    assert "client secret value, not the client secret ID" in result["error_description"]


def test_an_expired_secret_is_aadsts7000222(sandbox: SandboxHandle) -> None:
    result = sandbox.msal_app(FRESH, credential=sandbox.app_secret("expired")).acquire_token_for_client(scopes=[GRAPH])
    assert (result["error"], result["error_codes"]) == ("invalid_client", [7000222])


def test_a_tenant_that_never_consented_has_no_service_principal(sandbox: SandboxHandle) -> None:
    result = sandbox.msal_app(NEVER_CONSENTS).acquire_token_for_client(scopes=[GRAPH])
    assert (result["error"], result["error_codes"]) == ("unauthorized_client", [700016])
    assert f"was not found in the directory '{NEVER_CONSENTS}'" in result["error_description"]


def test_a_partial_grant_leaves_the_withheld_role_out_of_the_token(sandbox: SandboxHandle) -> None:
    roles = _claims(sandbox.token(PARTIAL))["roles"]
    assert "User.Invite.All" not in roles and "User.Read.All" in roles
    assert "roles" not in _claims(sandbox.token(PARTIAL, "https://manage.office.com"))  # nothing granted: no claim


@pytest.mark.parametrize(
    ("form", "status", "error", "code"),
    [
        ({"scope": "https://graph.microsoft.com/User.Read.All"}, 400, "invalid_scope", 1002012),
        ({"scope": "https://nosuch.example.com/.default"}, 400, "invalid_resource", 500011),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        ({"client_id": str(uuid.uuid4())}, 400, "unauthorized_client", 700016),
        ({}, 401, "invalid_client", 7000218),
    ],
    ids=["scope-without-default", "unknown-resource", "unsupported-grant", "unknown-client", "no-credential"],
)
def test_token_request_errors(sandbox: SandboxHandle, form: dict, status: int, error: str, code: int) -> None:
    if code != 7000218:
        form = {"client_secret": sandbox.app_secret(), **form}
    response = _post_token(sandbox, FRESH, **form)
    assert response.status_code == status
    assert (response.json()["error"], response.json()["error_codes"]) == (error, [code])


def test_throttled_token_endpoint_answers_429_with_retry_after(sandbox: SandboxHandle) -> None:
    sandbox.add_fault(service="login", kind="throttle", path_contains="/oauth2/", retry_after="7s", count=1)
    first = _post_token(sandbox, FRESH, client_secret=sandbox.app_secret())
    second = _post_token(sandbox, FRESH, client_secret=sandbox.app_secret())
    assert first.status_code == 429 and first.headers["Retry-After"] == "7"
    assert second.status_code == 200


# --- admin consent ---------------------------------------------------------------------------------------
def _consent_url(sandbox: SandboxHandle, tenant: str, v2: bool = False, **params: str) -> str:
    path = "v2.0/adminconsent" if v2 else "adminconsent"
    return f"{sandbox.base_url('login')}/{tenant}/{path}"


def _decide(sandbox: SandboxHandle, tenant: str, decision: str, v2: bool = False, **extra: str):
    session = sandbox.session()
    params = {"client_id": sandbox.client_id, "state": "abc123", **extra}
    page = session.get(_consent_url(sandbox, tenant, v2), params=params)
    assert page.status_code == 200
    return page, session.post(_consent_url(sandbox, tenant, v2), data={**params, "decision": decision}, allow_redirects=False)


def test_consent_page_lists_every_requested_permission(sandbox: SandboxHandle) -> None:
    page = sandbox.session().get(_consent_url(sandbox, NEVER_CONSENTS), params={"client_id": sandbox.client_id})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for permission in ("User.Invite.All", "RoleManagement.ReadWrite.Directory", "Exchange.ManageAsApp", "ActivityFeed.Read"):
        assert f"data-permission='{permission}'" in page.text
    assert "Never Consents LLC" in page.text and "Accept" in page.text and "Cancel" in page.text


def test_accept_redirects_with_admin_consent_and_tokens_follow_after_replication(sandbox: SandboxHandle) -> None:
    _, decision = _decide(sandbox, NEVER_CONSENTS, "accept")
    assert decision.status_code == 302
    query = parse_qs(urlsplit(decision.headers["location"]).query)
    assert query == {"admin_consent": ["True"], "tenant": [NEVER_CONSENTS], "state": ["abc123"]}
    too_soon = sandbox.msal_app(NEVER_CONSENTS).acquire_token_for_client(scopes=[GRAPH])
    assert too_soon["error_codes"] == [700016]  # the new service principal has not replicated yet
    sandbox.advance("31s")
    assert "User.Invite.All" in _claims(sandbox.token(NEVER_CONSENTS))["roles"]
    assert sandbox.tenant_state(NEVER_CONSENTS)["consent"]["status"] == "granted"


def test_accepting_twice_creates_one_service_principal(sandbox: SandboxHandle) -> None:
    _decide(sandbox, NEVER_CONSENTS, "accept")
    _decide(sandbox, NEVER_CONSENTS, "accept")
    principals = sandbox.tenant_state(NEVER_CONSENTS)["directory"]["servicePrincipals"]
    assert len(principals) == 1
    assert len(principals[0]["appRoleAssignments"]) == 9


def test_cancel_redirects_with_access_denied(sandbox: SandboxHandle) -> None:
    _, decision = _decide(sandbox, NEVER_CONSENTS, "cancel")
    query = parse_qs(urlsplit(decision.headers["location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == ["abc123"]
    assert query["error_description"][0].startswith("AADSTS65004")
    assert sandbox.tenant_state(NEVER_CONSENTS)["consent"]["status"] == "refused"


def test_v2_consent_needs_a_scope_and_echoes_it(sandbox: SandboxHandle) -> None:
    missing = sandbox.session().get(_consent_url(sandbox, NEVER_CONSENTS, v2=True), params={"client_id": sandbox.client_id})
    assert missing.status_code == 400 and "AADSTS900144" in missing.text
    _, decision = _decide(sandbox, NEVER_CONSENTS, "accept", v2=True, scope=GRAPH)
    assert parse_qs(urlsplit(decision.headers["location"]).query)["scope"] == [GRAPH]


def test_consent_with_an_unregistered_redirect_uri_is_aadsts50011(sandbox: SandboxHandle) -> None:
    page = sandbox.session().get(
        _consent_url(sandbox, NEVER_CONSENTS), params={"client_id": sandbox.client_id, "redirect_uri": "https://evil.example/cb"}
    )
    assert page.status_code == 400 and "AADSTS50011" in page.text


def test_late_consent_arrives_when_the_scenario_says(sandbox: SandboxHandle) -> None:
    assert sandbox.msal_app(LATE_CONSENT).acquire_token_for_client(scopes=[GRAPH])["error_codes"] == [700016]
    sandbox.advance("2h")
    assert sandbox.tenant_state(LATE_CONSENT)["consent"]["status"] == "granted"
    sandbox.advance("31s")
    assert "User.Read.All" in _claims(sandbox.token(LATE_CONSENT))["roles"]


def test_a_refusing_admin_is_recorded_and_no_token_is_issued(sandbox: SandboxHandle) -> None:
    sandbox.advance("31m")
    assert sandbox.tenant_state(REFUSES)["consent"]["status"] == "refused"
    assert sandbox.msal_app(REFUSES).acquire_token_for_client(scopes=[GRAPH])["error_codes"] == [700016]


def test_plain_requests_with_verification_against_the_system_store_fail(sandbox: SandboxHandle) -> None:
    """TLS is real: a client that does not trust the sandbox CA cannot talk to it."""
    import requests

    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{sandbox.base_url('login')}/{FRESH}/v2.0/.well-known/openid-configuration", timeout=10)
    assert VerifiedSession(sandbox.ca_bundle).get(f"{sandbox.base_url('login')}/_sandbox/health").ok
