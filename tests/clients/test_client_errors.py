"""How the clients turn what the APIs answer into typed errors, retries and nothing secret."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from clients.auth import TokenProvider
from clients.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeout,
    AppNotConsented,
    AuditLogDehydrated,
    AuditLogOff,
    BadRequest,
    DeviceRejected,
    InvalidCredentials,
    MissingPermission,
    PermissionDenied,
    ServerError,
    TenantNotFound,
    Throttled,
    Unauthorized,
)
from clients.graph import GraphClient
from tasks.context import TenantContext
from tests.conftest import DEHYDRATED, FRESH, NEVER_CONSENTS, OTHER_ORG, PARTIAL, WORKBENCH_ORG
from tests.sandbox_harness import SandboxHandle, free_port_block, sandbox_settings


def _graph_log(sandbox: SandboxHandle) -> list[tuple[str, int]]:
    return [(r["method"], r["status"]) for r in sandbox.request_log(service="graph")]


def test_transient_503s_on_a_read_are_retried_until_it_succeeds(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    ctx = make_context(FRESH)
    ctx.tokens.token(FRESH, "https://graph.microsoft.com")
    step_sandbox.add_fault(service="graph", kind="unavailable", count=2)
    assert ctx.graph.get_organization().display_name == "Fresh Corp"
    assert _graph_log(step_sandbox) == [("GET", 503), ("GET", 503), ("GET", 200)]


def test_throttling_beyond_the_retries_raises_throttled_with_retry_after(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    ctx = make_context(FRESH)
    step_sandbox.add_fault(service="graph", kind="throttle", retry_after="1s")
    with pytest.raises(Throttled) as caught:
        ctx.graph.get_organization()
    assert caught.value.retry_after == 1.0 and caught.value.code == "TooManyRequests"
    assert caught.value.request_id and caught.value.request_id in str(caught.value)
    assert len(_graph_log(step_sandbox)) == 1 + ctx.settings.timing.http_retries


def test_a_failed_post_is_never_retried(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    ctx = make_context(FRESH)
    step_sandbox.add_fault(service="graph", kind="unavailable", method="POST", count=1)
    with pytest.raises(ServerError):
        ctx.graph.create_invitation("someone@mdr.example", "Someone", "https://myapps.microsoft.com", False)
    assert _graph_log(step_sandbox) == [("POST", 503)]


def test_a_slow_answer_becomes_a_timeout(step_sandbox: SandboxHandle) -> None:
    settings = sandbox_settings(step_sandbox)
    tokens = TokenProvider(settings.endpoints().login, step_sandbox.client_id, step_sandbox.app_secret, ca_bundle=settings.ca_bundle)
    graph = GraphClient(step_sandbox.base_url("graph"), authorization=tokens.bearer(FRESH, "https://graph.microsoft.com"),
                        tenant_id=FRESH, ca_bundle=settings.ca_bundle, timeout_s=0.3, retries=0)
    step_sandbox.add_fault(service="graph", kind="slow", delay="1s")
    with pytest.raises(ApiTimeout, match=r"no answer within 0.3s"):
        graph.get_organization()


def test_an_unreachable_service_is_a_connection_error(step_sandbox: SandboxHandle) -> None:
    closed = free_port_block(1)
    graph = GraphClient(f"https://127.0.0.1:{closed}", authorization=lambda: "Bearer x", tenant_id=FRESH, ca_bundle=step_sandbox.ca_bundle, retries=0)
    with pytest.raises(ApiConnectionError, match=rf"cannot reach https://127.0.0.1:{closed}"):
        graph.get_organization()


def test_an_unconsented_tenant_says_what_to_do_next(step_sandbox: SandboxHandle) -> None:
    settings = sandbox_settings(step_sandbox)
    tokens = TokenProvider(settings.endpoints().login, step_sandbox.client_id, step_sandbox.app_secret, ca_bundle=settings.ca_bundle)
    with pytest.raises(AppNotConsented) as caught:
        tokens.token(NEVER_CONSENTS, "https://graph.microsoft.com")
    assert NEVER_CONSENTS in str(caught.value) and "admin-consent link" in str(caught.value)


def test_a_wrong_secret_is_an_invalid_credential_and_is_never_shown(step_sandbox: SandboxHandle) -> None:
    settings = sandbox_settings(step_sandbox)
    secret = "Wr0ng-but-secret-value"
    tokens = TokenProvider(settings.endpoints().login, step_sandbox.client_id, lambda: secret, ca_bundle=settings.ca_bundle)
    with pytest.raises(InvalidCredentials) as caught:
        tokens.token(FRESH, "https://graph.microsoft.com")
    assert "AADSTS7000215" in str(caught.value)
    assert secret not in str(caught.value) and secret.encode() not in pickle.dumps(caught.value)


def test_errors_survive_pickling_for_prefect_states(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    ctx = make_context(FRESH)
    token = ctx.tokens.token(FRESH, "https://graph.microsoft.com")
    step_sandbox.add_fault(service="graph", kind="throttle", retry_after="1s")
    with pytest.raises(Throttled) as caught:
        ctx.graph.get_organization()
    restored = pickle.loads(pickle.dumps(caught.value))
    assert type(restored) is Throttled and str(restored) == str(caught.value) and restored.retry_after == 1.0
    assert token.encode() not in pickle.dumps(caught.value)


# --- what a client makes of an error keeps what the service said ---------------------------------------
def _forged_token(sandbox: SandboxHandle, tenant: str, audience: str, roles: list[str]) -> str:
    """A token the sandbox accepts, for ``audience``, carrying only ``roles`` (as a partial grant would)."""
    from sandbox.core.tokens import TokenSigner

    signer = TokenSigner(sandbox.state_dir / "token-signing-key.pem")
    return signer.issue({"aud": audience, "tid": tenant, "appid": sandbox.client_id, "roles": roles}, issuer=f"https://sts.windows.net/{tenant}/")


def _exchange_without_manage_as_app(ctx: TenantContext, sandbox: SandboxHandle) -> None:
    token = _forged_token(sandbox, FRESH, "https://outlook.office365.com", [])
    ctx.exchange._authorization = lambda: f"Bearer {token}"
    ctx.exchange.get_admin_audit_log_config()


CASES: dict[str, tuple[str, Callable[[TenantContext, SandboxHandle], object], type[Exception], type[ApiError], int, str]] = {
    # name: (tenant, call, the domain error, the status error it also is, status, the service's code)
    "graph, a permission not granted": (PARTIAL, lambda ctx, _: ctx.graph.create_invitation("soc@mdr.example", "SOC", "https://myapps.microsoft.com", False),
                                        MissingPermission, PermissionDenied, 403, "Unauthorized"),  # the invitation manager's code
    "exchange, no Exchange.ManageAsApp": (FRESH, _exchange_without_manage_as_app, MissingPermission, Unauthorized, 401, "Unauthorized"),
    "exchange, a read role setting": (OTHER_ORG, lambda ctx, _: ctx.exchange.set_unified_audit_log_ingestion(True),
                                      MissingPermission, PermissionDenied, 403, "Unauthorized"),
    "exchange, a dehydrated organization": (DEHYDRATED, lambda ctx, _: ctx.exchange.set_unified_audit_log_ingestion(True),
                                            AuditLogDehydrated, BadRequest, 400, "BadRequest"),
    "management activity, no ActivityFeed.Read": (PARTIAL, lambda ctx, _: ctx.management.list_subscriptions(), MissingPermission, Unauthorized, 401, "AF10001"),
    "management activity, auditing not in effect": (FRESH, lambda ctx, _: ctx.management.start_subscription("Audit.General"),
                                                    AuditLogOff, BadRequest, 400, "StartSubscription"),  # not an AF code
    "workbench, a refused device": (FRESH, lambda ctx, _: ctx.workbench.create_security_device(WORKBENCH_ORG, "M365", "o365", {"tenant_id": FRESH}),
                                    DeviceRejected, BadRequest, 400, "EINVALID"),
    "login, no such tenant": ("12345678-1234-4234-8234-123456789012", lambda ctx, _: ctx.login.get_openid_configuration(ctx.tenant_id),
                              TenantNotFound, BadRequest, 400, "AADSTS90002"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_translated_error_is_also_the_status_error_and_keeps_status_code_request_id_and_cause(
    step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext], case: str
) -> None:
    tenant, call, kind, status_class, status, code = CASES[case]
    with pytest.raises(kind) as caught:
        call(make_context(tenant), step_sandbox)
    error = caught.value
    assert isinstance(error, status_class) and isinstance(error, ApiError)
    assert error.status == status and (error.code or "").startswith(code)
    assert error.request_id and error.request_id in str(error)
    cause = error.__cause__
    assert type(cause) is status_class, cause  # what the API said, as it said it
    assert isinstance(cause, ApiError) and (cause.status, cause.code, cause.request_id) == (error.status, error.code, error.request_id)
    assert error.next_action, "a translated error says what to do next"


def test_a_certificate_the_ca_does_not_vouch_for_reads_differently_from_a_refused_connection(step_sandbox: SandboxHandle, tmp_path: Path) -> None:
    from sandbox.core.tls import ensure_tls_files

    other_ca = ensure_tls_files(tmp_path / "other-ca").ca_cert  # a CA that did not sign the sandbox's certificate
    untrusted = GraphClient(step_sandbox.base_url("graph"), authorization=lambda: "Bearer x", tenant_id=FRESH, ca_bundle=other_ca, retries=0)
    with pytest.raises(ApiConnectionError) as refused_certificate:
        untrusted.get_organization()
    assert "TLS certificate verification failed" in str(refused_certificate.value), refused_certificate.value
    assert isinstance(refused_certificate.value.__cause__, requests.exceptions.SSLError)

    closed = free_port_block(1)
    nobody = GraphClient(f"https://127.0.0.1:{closed}", authorization=lambda: "Bearer x", tenant_id=FRESH, ca_bundle=step_sandbox.ca_bundle, retries=0)
    with pytest.raises(ApiConnectionError) as refused_connection:
        nobody.get_organization()
    assert "connection refused" in str(refused_connection.value) and "certificate" not in str(refused_connection.value)
    assert isinstance(refused_connection.value.__cause__, requests.exceptions.ConnectionError)
