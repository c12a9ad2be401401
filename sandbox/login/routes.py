"""Login routes on the real paths: OIDC discovery, JWKS, the v2.0 token endpoint, admin consent (v1 and v2)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from sandbox.core.catalog import resource_by_audience
from sandbox.core.service import build_service_app, finish_service_app
from sandbox.core.world import World
from sandbox.login import errors
from sandbox.login.assertions import verify_client_assertion
from sandbox.login.consent_page import render_consent_page
from sandbox.login.errors import ERRORS, ErrorPage
from sandbox.login.models import secret_matches
from sandbox.login.tenants import KEYWORDS, ResolvedTenant, resolve_tenant

REAL_LOGIN_HOST = "login.microsoftonline.com"


def _tenant_of_path(path: str) -> str | None:
    first = path.strip("/").split("/", 1)[0]
    return first or None


def build_app(world: World, before_catch_all: Callable[[FastAPI], None] | None = None) -> FastAPI:
    app = build_service_app(world, "login", ERRORS, _tenant_of_path)

    def base(request: Request) -> str:
        return world.base_urls.get("login") or str(request.base_url).rstrip("/")

    # --- discovery ----------------------------------------------------------------------------------
    @app.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def openid_configuration(tenant: str, request: Request) -> Response:
        if tenant.lower() in KEYWORDS:
            tid = "{tenantid}"  # the real document keeps the placeholder for multi-tenant keywords
        else:
            tid = resolve_tenant(world, tenant).tenant_id
        root = base(request)
        graph_host = urlsplit(world.base_urls.get("graph", "https://graph.microsoft.com")).netloc
        document = {
            "token_endpoint": f"{root}/{tid}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{root}/{tid}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/{tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"https://{graph_host}/oidc/userinfo",
            "authorization_endpoint": f"{root}/{tid}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/{tid}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/{tid}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid", "roles"],
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": graph_host,
            "rbac_url": "https://pas.windows.net",
        }
        return JSONResponse(document, headers={"Cache-Control": "max-age=86400, private"})

    @app.get("/{tenant}/discovery/v2.0/keys")
    async def keys(tenant: str) -> Response:
        if tenant.lower() not in KEYWORDS:
            resolve_tenant(world, tenant)
        return JSONResponse(world.signer.jwks(), headers={"Cache-Control": "max-age=86400, private"})

    # --- client-credentials token -------------------------------------------------------------------
    @app.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        basic_id, basic_secret = _basic_credentials(request.headers.get("authorization"))
        if tenant.lower() in KEYWORDS:
            raise errors.OAuthError(
                400, "invalid_request", 50059, "No tenant-identifying information found in either the request or implied by any provided credentials."
            )
        resolved = resolve_tenant(world, tenant)
        request.state.tenant_id = resolved.tenant_id
        grant = form.get("grant_type")
        if not grant:
            raise errors.missing_parameter("grant_type")
        if grant != "client_credentials":
            raise errors.unsupported_grant(grant)
        client_id = form.get("client_id") or basic_id
        if not client_id:
            raise errors.missing_parameter("client_id")
        request.state.app_id = client_id
        scope = form.get("scope")
        if not scope:
            raise errors.missing_parameter("scope")
        with world.lock:
            now = world.clock.now()
            if client_id.lower() != world.app.client_id.lower():
                raise errors.app_not_in_directory(client_id, resolved.tenant_id)
            sp = _service_principal(world, resolved, now)
            if sp is None:
                if world.app.unconsented_error == "AADSTS7000229":
                    raise errors.missing_service_principal(client_id, resolved.tenant_id)
                raise errors.app_not_in_directory(client_id, resolved.tenant_id)
            _authenticate_client(world, form, basic_secret, resolved, tenant, request)
            scopes = scope.split()
            if len(scopes) != 1 or not scopes[0].endswith("/.default"):
                raise errors.invalid_scope(scope)
            resource = resource_by_audience(scopes[0].removesuffix("/.default"))
            if resource is None:
                raise errors.resource_not_found(scopes[0].removesuffix("/.default"), resolved.tenant_id)
            roles: list[str] = []
            wids: list[str] = []
            if resolved.customer is not None:
                directory = resolved.customer.directory
                roles = directory.granted_roles(world.app.client_id, resource, now)
                wids = [
                    a.role_definition_id
                    for a in directory.role_assignments.values()
                    if a.principal_id == sp and a.visible(now)
                ]
            request.state.operation = f"token:{resource.key}"
            access_token = world.signer.issue(
                {
                    "aud": resource.audience,
                    "tid": resolved.tenant_id,
                    "appid": world.app.client_id,
                    "appidacr": "2" if form.get("client_assertion") else "1",
                    "app_displayname": world.app.display_name,
                    "idp": f"https://sts.windows.net/{resolved.tenant_id}/",
                    "oid": sp,
                    "sub": sp,
                    "roles": roles,
                    "wids": wids,
                },
                issuer=f"https://sts.windows.net/{resolved.tenant_id}/",
            )
        return JSONResponse(
            {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": access_token},
            headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    # --- admin consent ----------------------------------------------------------------------------------
    async def consent_get(tenant: str, request: Request, v2: bool) -> Response:
        params = dict(request.query_params)
        ctx = _consent_context(world, tenant, params, v2)
        with world.lock:
            ctx.resolved.customer.consent.consent_page_views += 1  # type: ignore[union-attr]
        request.state.tenant_id = ctx.resolved.tenant_id
        request.state.operation = "adminconsent:view"
        hidden = {k: v for k, v in params.items() if k in ("client_id", "redirect_uri", "state", "scope")}
        page = render_consent_page(world.app, world.scenario.provider.display_name, ctx.resolved.customer.spec.display_name, request.url.path, hidden)  # type: ignore[union-attr]
        return HTMLResponse(page)

    async def consent_post(tenant: str, request: Request, v2: bool) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        ctx = _consent_context(world, tenant, form, v2)
        customer = ctx.resolved.customer
        assert customer is not None
        request.state.tenant_id = customer.id
        state = form.get("state")
        decision = form.get("decision")
        with world.lock:
            now = world.clock.now()
            if decision == "accept":
                request.state.operation = "adminconsent:accept"
                world.grant_consent(customer, now)
                query = {"admin_consent": "True", "tenant": customer.id}
                if v2:
                    query["scope"] = form.get("scope", "")
            elif decision == "cancel":
                request.state.operation = "adminconsent:cancel"
                world.refuse_consent(customer, now)
                query = {
                    "error": "access_denied",
                    "error_description": "AADSTS65004: User declined to consent to access the app.",
                    "error_uri": "https://login.microsoftonline.com/error?code=65004",
                }
            else:
                raise ErrorPage(400, 90014, "The decision must be 'accept' or 'cancel'.")
        if state is not None:
            query["state"] = state
        separator = "&" if "?" in ctx.redirect_uri else "?"
        return RedirectResponse(f"{ctx.redirect_uri}{separator}{urlencode(query)}", status_code=302)

    @app.get("/{tenant}/adminconsent")
    async def adminconsent_v1(tenant: str, request: Request) -> Response:
        return await consent_get(tenant, request, v2=False)

    @app.post("/{tenant}/adminconsent")
    async def adminconsent_v1_decision(tenant: str, request: Request) -> Response:
        return await consent_post(tenant, request, v2=False)

    @app.get("/{tenant}/v2.0/adminconsent")
    async def adminconsent_v2(tenant: str, request: Request) -> Response:
        return await consent_get(tenant, request, v2=True)

    @app.post("/{tenant}/v2.0/adminconsent")
    async def adminconsent_v2_decision(tenant: str, request: Request) -> Response:
        return await consent_post(tenant, request, v2=True)

    if before_catch_all is not None:
        before_catch_all(app)
    return finish_service_app(app, ERRORS)


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.lower().startswith("basic "):
        return None, None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return None, None
    return user or None, password or None


def _service_principal(world: World, resolved: ResolvedTenant, now) -> str | None:
    """The app's service principal id in the tenant, once it exists and has replicated."""
    if resolved.customer is None:
        return world.app.client_id  # the app's home tenant always has it; its id stands in
    sp = resolved.customer.directory.service_principal_by_app_id(world.app.client_id)
    return sp.id if sp is not None and sp.visible(now) else None


def _authenticate_client(world: World, form: dict[str, str], basic_secret: str | None, resolved: ResolvedTenant, tenant_ref: str, request: Request) -> None:
    presented_secret = form.get("client_secret") or basic_secret
    assertion = form.get("client_assertion")
    if presented_secret:
        secret = secret_matches(world.app, presented_secret)
        if secret is None:
            raise errors.invalid_secret(world.app.client_id)
        if secret.expired(world.clock.now()):
            raise errors.expired_secret(world.app.client_id)
        return
    if assertion:
        own_host = urlsplit(world.base_urls.get("login") or str(request.base_url)).netloc.lower()
        refs = {tenant_ref, resolved.tenant_id}
        if resolved.customer is not None:
            refs.add(resolved.customer.spec.initial_domain)
        paths = {f"/{ref}/oauth2/v2.0/token" for ref in refs} | {f"/{ref}/oauth2/token" for ref in refs}
        verify_client_assertion(world.app, assertion, form.get("client_assertion_type"), paths, {own_host, REAL_LOGIN_HOST})
        return
    raise errors.missing_credential()


class _ConsentContext:
    def __init__(self, resolved: ResolvedTenant, redirect_uri: str) -> None:
        self.resolved = resolved
        self.redirect_uri = redirect_uri


def _consent_context(world: World, tenant: str, params: dict[str, str], v2: bool) -> _ConsentContext:
    """Check an admin-consent request the way Entra does before showing the page."""
    if tenant.lower() in KEYWORDS:
        raise ErrorPage(
            400, 90002, f"The sandbox cannot sign an admin in to '{tenant}'; use the customer's tenant id or domain in the consent URL."
        )
    try:
        resolved = resolve_tenant(world, tenant)
    except errors.OAuthError as exc:
        raise ErrorPage(400, exc.aadsts, exc.body["error_description"].split("\r\n")[0].split(": ", 1)[1]) from exc
    if resolved.customer is None:
        raise ErrorPage(400, 90002, "Admin consent is given in the customer's tenant, not in the app's home tenant.")
    client_id = params.get("client_id")
    if not client_id:
        raise ErrorPage(400, 900144, "The request body must contain the following parameter: 'client_id'.")
    if client_id.lower() != world.app.client_id.lower():
        raise ErrorPage(400, 700016, f"Application with identifier '{client_id}' was not found in the directory '{resolved.tenant_id}'.")
    if v2:
        scope = params.get("scope")
        if not scope:
            raise ErrorPage(400, 900144, "The request body must contain the following parameter: 'scope'.")
        if any(not s.endswith("/.default") for s in scope.split()):
            raise ErrorPage(400, 70011, f"The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid.")
    redirect_uri = params.get("redirect_uri") or world.app.redirect_uris[0]
    if redirect_uri not in world.app.redirect_uris:
        raise ErrorPage(
            400,
            50011,
            f"The redirect URI '{redirect_uri}' specified in the request does not match"
            f" the redirect URIs configured for the application '{world.app.client_id}'.",
        )
    return _ConsentContext(resolved, redirect_uri)
