"""No error shows a secret: not a credential block's validation error, not a login error, not a 401 or 403.

Each test gives a canary where a secret goes, makes the code fail, and searches everything of the
error a person or a log could read: its text and repr, its args and attributes, every exception in
its cause and context chain (requests' copy of the request included), pydantic's ``errors()`` and
``json()``, the formatted traceback and the pickle Prefect would store. No 8-character piece of the
canary may appear, nor any JWT (an access token or a client assertion starts ``eyJ``).
"""

from __future__ import annotations

import json
import pickle
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from prefect.client.schemas.objects import BlockDocument
from pydantic import SecretStr, ValidationError

from blocks.credentials import ProviderAppCredentials, WorkbenchCredentials
from clients.auth import TokenProvider
from clients.errors import ApiTimeout, InvalidCredentials, MissingPermission, Unauthorized, WorkbenchRoleRequired
from clients.graph import GraphClient
from clients.workbench import WorkbenchClient
from tasks.context import TenantContext
from tests.conftest import FRESH, PARTIAL, WORKBENCH_ORG
from tests.sandbox_harness import SandboxHandle, sandbox_settings

CANARY = "CANARY-SECRET-0123456789abcdef0123456789"
GRAPH = "https://graph.microsoft.com"
CLIENT_ID = "6c1f6e0a-4a61-4f0e-9d2f-7e6e3a1f5b21"


# --- what an error shows -----------------------------------------------------------------------------------
def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__, *current.args) if isinstance(e, BaseException)]


def _expand(value: Any, depth: int = 0) -> Iterator[str]:
    """A value as text, with what requests keeps on its exceptions spelled out (the request's headers and body)."""
    yield repr(value)
    if depth < 3 and isinstance(value, requests.PreparedRequest | requests.Response):
        for inner in vars(value).values():
            yield from _expand(inner, depth + 1)
    elif depth < 3 and isinstance(value, dict | list | tuple):
        for inner in value.values() if isinstance(value, dict) else value:
            yield from _expand(inner, depth + 1)
    elif isinstance(value, bytes):
        yield value.decode("latin-1")


def readable(exc: BaseException) -> str:
    """Everything of ``exc`` someone could read, as one text."""
    texts: list[str] = ["".join(traceback.format_exception(exc))]
    for error in _chain(exc):
        texts += [str(error), repr(error), *(t for arg in error.args for t in _expand(arg))]
        texts += [t for value in vars(error).values() for t in _expand(value)]
        if isinstance(error, ValidationError):
            texts += [repr(error.errors()), error.json()]
    try:
        texts.append(pickle.dumps(exc).decode("latin-1"))
    except (pickle.PicklingError, TypeError, AttributeError):
        pass
    return "\n".join(texts)


def assert_hides(exc: BaseException, *secrets: str) -> None:
    text = readable(exc)
    for secret in secrets:
        pieces = {secret[i:i + 8] for i in range(len(secret) - 7)}
        shown = sorted(p for p in pieces if p in text)
        assert not shown, f"{type(exc).__name__} shows part of a secret: {shown[:3]}"
    assert "eyJ" not in text, f"{type(exc).__name__} shows a JWT (a token or an assertion)"


def _pem(key_or_text: str) -> str:
    return f"-----BEGIN PRIVATE KEY-----\n{key_or_text}\n-----END PRIVATE KEY-----\n"


def _certificate_and_key(common_name: str = "not-registered") -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


CERTIFICATE, KEY = _certificate_and_key()
_, OTHER_KEY = _certificate_and_key("another")


# --- credential blocks that fail validation ---------------------------------------------------------------
APP_CASES: dict[str, dict[str, Any]] = {
    "a secret with a line break inside": {"client_secret": f"{CANARY}\nsecond line"},
    "a secret with a control character": {"client_secret": f"{CANARY}\x07"},
    "a secret pasted into client_id": {"client_id": CANARY, "client_secret": "x" * 40},
    "a secret with a certificate as well": {"client_secret": CANARY, "certificate_pem": CERTIFICATE, "certificate_private_key": KEY},
    "a secret with half a certificate": {"client_secret": CANARY, "certificate_pem": CERTIFICATE},
    "a malformed private key": {"certificate_pem": CERTIFICATE, "certificate_private_key": _pem(CANARY)},
    "a private key of another certificate": {"certificate_pem": CERTIFICATE, "certificate_private_key": OTHER_KEY + CANARY},
    "a malformed certificate": {"certificate_pem": f"-----BEGIN CERTIFICATE-----\n{CANARY}\n-----END CERTIFICATE-----\n", "certificate_private_key": KEY},
    "a key given as the certificate": {"certificate_pem": _pem(CANARY), "certificate_private_key": _pem(CANARY)},
    "a secret of the wrong type": {"client_secret": {"value": CANARY}},
}
WORKBENCH_CASES: dict[str, dict[str, Any]] = {
    "a key with a line break inside": {"api_key": f"{CANARY}\n{CANARY}"},
    "an empty key": {"api_key": "   ", "organization_id": CANARY},
    "a key pasted into organization_id": {"api_key": "k" * 32, "organization_id": CANARY},
    "a key of the wrong type": {"api_key": [CANARY]},
}


def _app_data(case: dict[str, Any]) -> dict[str, Any]:
    return {"client_id": CLIENT_ID, **case}


@pytest.mark.parametrize("case", list(APP_CASES))
def test_a_provider_app_block_failing_validation_shows_no_part_of_the_secret(case: str) -> None:
    data = _app_data(APP_CASES[case])
    for build in (lambda: ProviderAppCredentials(**data), lambda: ProviderAppCredentials.model_validate(data),
                  lambda: ProviderAppCredentials.model_validate_json(json.dumps(data))):
        with pytest.raises(ValidationError) as caught:
            build()
        assert caught.value.errors() and all(e["input"] == "<hidden>" for e in caught.value.errors())
        assert_hides(caught.value, CANARY, KEY.splitlines()[1])


@pytest.mark.parametrize("case", list(WORKBENCH_CASES))
def test_a_workbench_block_failing_validation_shows_no_part_of_the_key(case: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WorkbenchCredentials(**WORKBENCH_CASES[case])
    assert_hides(caught.value, CANARY)


def test_the_messages_still_say_what_is_wrong() -> None:
    def message(**data: Any) -> str:
        with pytest.raises(ValidationError) as caught:
            ProviderAppCredentials(**_app_data(data))
        return caught.value.errors()[0]["msg"]

    assert "client_id must be a GUID" in message(client_id=CANARY, client_secret="x" * 40)
    assert "not an unencrypted PEM private key" in message(certificate_pem=CERTIFICATE, certificate_private_key=_pem(CANARY))
    assert "not the key of certificate_pem" in message(certificate_pem=CERTIFICATE, certificate_private_key=OTHER_KEY)
    assert "not a PEM certificate" in message(certificate_pem="junk", certificate_private_key=KEY)
    assert "line breaks" in message(client_secret=f"{CANARY}\nmore")
    assert "the secret's ID" in message(client_secret=str(uuid.uuid4()))


def test_surrounding_whitespace_of_a_pasted_secret_is_dropped() -> None:
    app = ProviderAppCredentials(client_id=f" {CLIENT_ID.upper()} ", client_secret=SecretStr(f"  {CANARY}\n"))
    assert app.client_id == CLIENT_ID and app.msal_credential() == CANARY
    workbench = WorkbenchCredentials(api_key=f"{CANARY}\r\n", organization_id="{" + WORKBENCH_ORG.upper() + "}")
    assert workbench.authorization_header() == f"Bearer {CANARY}" and workbench.organization_id == WORKBENCH_ORG
    assert ProviderAppCredentials(client_id=CLIENT_ID, certificate_pem=CERTIFICATE, certificate_private_key=f"\n{KEY}\n\n").msal_credential()


def _block_document(block: type[ProviderAppCredentials] | type[WorkbenchCredentials], data: dict[str, Any]) -> BlockDocument:
    block_type_id = uuid.uuid4()
    schema = block._to_block_schema(block_type_id=block_type_id)
    return BlockDocument(id=uuid.uuid4(), name="customer-block", data=data, block_schema_id=schema.id, block_schema=schema,
                         block_type_id=block_type_id, block_type_name=block.get_block_type_name())


@pytest.mark.parametrize("case", ["a malformed private key", "a secret with a line break inside", "a secret pasted into client_id"])
def test_loading_a_saved_block_that_fails_validation_logs_no_secret(case: str) -> None:
    """What Block.load raises for a bad saved document (the task log shows it, with its cause)."""
    with pytest.raises(RuntimeError, match="failed validation") as caught:
        ProviderAppCredentials._load_from_block_document(_block_document(ProviderAppCredentials, _app_data(APP_CASES[case])))
    assert isinstance(caught.value.__cause__, ValidationError)
    assert_hides(caught.value, CANARY)
    with pytest.raises(RuntimeError, match="failed validation") as caught:
        WorkbenchCredentials._load_from_block_document(_block_document(WorkbenchCredentials, {"api_key": f"{CANARY}\n{CANARY}"}))
    assert_hides(caught.value, CANARY)


# --- login errors ----------------------------------------------------------------------------------------
def _tokens(sandbox: SandboxHandle, credential: Callable[[], str | dict[str, Any]], timeout_s: float = 30.0) -> TokenProvider:
    settings = sandbox_settings(sandbox)
    return TokenProvider(settings.endpoints().login, sandbox.client_id, credential, ca_bundle=settings.ca_bundle, timeout_s=timeout_s)


def _certificate_credential(certificate: str, key: str) -> dict[str, str]:
    thumbprint = x509.load_pem_x509_certificate(certificate.encode()).fingerprint(hashes.SHA1()).hex()
    return {"private_key": key, "thumbprint": thumbprint, "public_certificate": certificate}


def test_a_refused_secret_is_not_in_the_login_error(step_sandbox: SandboxHandle) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        _tokens(step_sandbox, lambda: CANARY).token(FRESH, GRAPH)
    assert_hides(caught.value, CANARY)


def test_a_certificate_the_app_does_not_have_is_refused_without_its_key_or_assertion(step_sandbox: SandboxHandle) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        _tokens(step_sandbox, lambda: _certificate_credential(CERTIFICATE, KEY)).token(FRESH, GRAPH)
    assert_hides(caught.value, *KEY.splitlines()[1:4])


def test_a_key_msal_cannot_sign_with_is_a_typed_error_without_the_key(step_sandbox: SandboxHandle) -> None:
    """msal signs the client assertion only at the first token request; the block's validator is bypassed here."""
    with pytest.raises(InvalidCredentials, match="cannot sign the login assertion") as caught:
        _tokens(step_sandbox, lambda: _certificate_credential(CERTIFICATE, _pem(CANARY))).token(FRESH, GRAPH)
    assert_hides(caught.value, CANARY)


@pytest.mark.parametrize("kind", ["secret", "certificate"])
def test_a_token_request_that_times_out_keeps_neither_the_secret_nor_the_assertion(step_sandbox: SandboxHandle, kind: str) -> None:
    """requests keeps the request (its body: client_secret=… or client_assertion=…) on its exceptions; ours drop it."""
    files = step_sandbox.app_certificate()
    certificate, key = Path(files["cert"]).read_text(), Path(files["key"]).read_text()
    credential: Callable[[], str | dict[str, Any]] = (lambda: CANARY) if kind == "secret" else (lambda: _certificate_credential(certificate, key))
    tokens = _tokens(step_sandbox, credential, timeout_s=0.5)
    tokens._app(FRESH)  # discovery first, unhurried: only the token request is slow
    step_sandbox.add_fault(service="login", kind="slow", path_contains="/oauth2/", delay="3s", count=1)
    with pytest.raises(ApiTimeout, match=r"no answer within 0.5s") as caught:
        tokens.token(FRESH, GRAPH)
    cause = caught.value.__cause__
    assert isinstance(cause, requests.RequestException) and cause.request is None and cause.response is None
    assert_hides(caught.value, CANARY, *key.splitlines()[1:4])


# --- 401 and 403 from the APIs ---------------------------------------------------------------------------
def test_a_refused_bearer_token_is_not_in_the_401(step_sandbox: SandboxHandle) -> None:
    graph = GraphClient(step_sandbox.base_url("graph"), authorization=lambda: f"Bearer {CANARY}", tenant_id=FRESH, ca_bundle=step_sandbox.ca_bundle,
                        retries=0)
    with pytest.raises(Unauthorized) as caught:
        graph.get_organization()
    assert_hides(caught.value, CANARY)


def test_a_refused_workbench_key_is_not_in_the_401(step_sandbox: SandboxHandle) -> None:
    workbench = WorkbenchClient(step_sandbox.base_url("workbench"), authorization=lambda: f"Bearer {CANARY}", ca_bundle=step_sandbox.ca_bundle, retries=0)
    with pytest.raises(Unauthorized) as caught:
        workbench.list_organizations()
    assert caught.value.next_action and "WorkbenchCredentials" in caught.value.next_action
    assert_hides(caught.value, CANARY)


def test_a_read_only_workbench_key_is_not_in_the_403(step_sandbox: SandboxHandle) -> None:
    key = step_sandbox.workbench_key("readonly")
    workbench = WorkbenchClient(step_sandbox.base_url("workbench"), authorization=lambda: f"Bearer {key}", ca_bundle=step_sandbox.ca_bundle, retries=0)
    with pytest.raises(WorkbenchRoleRequired) as caught:
        workbench.create_security_device(WORKBENCH_ORG, "M365", "o365", {"tenant_id": FRESH, "tenant_name": "Fresh Corp"})
    assert_hides(caught.value, key)


def test_a_token_without_the_permission_is_not_in_the_403(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    ctx = make_context(PARTIAL)
    token = ctx.tokens.token(PARTIAL, GRAPH)
    with pytest.raises(MissingPermission) as caught:
        ctx.graph.create_invitation("soc@mdr.example", "SOC", "https://myapps.microsoft.com", False)
    assert_hides(caught.value, token, step_sandbox.app_secret())


@pytest.mark.parametrize("value", [f"Bearer {CANARY}\n", f"Bearer {CANARY}\r\nX-Injected: 1", f" Bearer {CANARY}", f"Bearer {CANARY}\x00"])
def test_a_credential_requests_would_refuse_is_stopped_before_it_can_be_quoted(step_sandbox: SandboxHandle, value: str) -> None:
    """requests' InvalidHeader quotes the whole header value; the client refuses such a value itself, and sends nothing."""
    workbench = WorkbenchClient(step_sandbox.base_url("workbench"), authorization=lambda: value, ca_bundle=step_sandbox.ca_bundle, retries=0)
    with pytest.raises(InvalidCredentials, match="line breaks or control characters") as caught:
        workbench.list_organizations()
    assert_hides(caught.value, CANARY)
    assert step_sandbox.request_log(service="workbench") == []
