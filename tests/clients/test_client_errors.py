"""How the clients turn what the APIs answer into typed errors, retries and nothing secret."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest

from clients.auth import TokenProvider
from clients.errors import ApiConnectionError, ApiTimeout, AppNotConsented, InvalidCredentials, ServerError, Throttled
from clients.graph import GraphClient
from tasks.context import TenantContext
from tests.conftest import FRESH, NEVER_CONSENTS
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
