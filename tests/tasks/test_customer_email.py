"""Customer messages by email through prefect-email's EmailServerCredentials block.

A local SMTP server (aiosmtpd) that requires STARTTLS, with a certificate from a test CA that the
client trusts through SSL_CERT_FILE, as a private mail relay would be set up.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from prefect import flow
from prefect_email import EmailServerCredentials

from core.requests import TenantRequest
from sandbox.core.tls import ensure_tls_files
from tasks.admin_consent import CONSENT
from tasks.customer_messages import first_request, notify_customer
from tasks.errors import UnusableChannel

pytestmark = pytest.mark.slow  # needs a Prefect server

TENANT = TenantRequest(tenant_id="3c3c3c3c-0000-4000-8000-000000000001", organization_name="Mail Corp",
                       provider_org_id="0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d")
CONTACT = "admin@mailcorp.example"


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))  # type: ignore[attr-defined]
        return "250 OK"



@pytest.fixture
def relay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[_Inbox, int]]:
    tls = ensure_tls_files(tmp_path / "tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.server_cert, tls.server_key)
    inbox = _Inbox()
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    controller.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_cert))  # the client trusts the relay's CA
    monkeypatch.setenv("M365_ONBOARD_NOTIFICATIONS__EMAIL_FROM", "onboarding@provider.example")
    yield inbox, port
    controller.stop()


def _save(name: str, port: int, **options: object) -> str:
    EmailServerCredentials(smtp_server="127.0.0.1", smtp_port=port, smtp_type="STARTTLS", username=None, **options).save(name, overwrite=True)
    return f"email-server-credentials/{name}"


def test_the_consent_request_is_mailed_to_the_contact_once_per_run(prefect_server: None, relay: tuple[_Inbox, int]) -> None:
    inbox, port = relay
    slug = _save("customer-mail", port)
    subject, body = first_request(TENANT, CONTACT, CONSENT, "Open https://login.example/adminconsent?client_id=abc", "Expel")

    @flow
    def onboarding_run() -> list[bool]:
        # a re-executed run calls it again: the cached result stands in, nothing is sent twice
        return [notify_customer(TENANT, "admin_consent-request", subject, body, slug, CONTACT) for _ in range(2)]

    assert onboarding_run() == [True, True]
    [(sender, recipients, raw)] = inbox.messages
    mail = message_from_bytes(raw, policy=policy.default)
    assert (sender, recipients, mail["To"], mail["Subject"]) == ("onboarding@provider.example", [CONTACT], CONTACT, subject)
    text = mail.get_content()
    assert "grant admin consent" in text and "adminconsent?client_id=abc" in text and not text.startswith("To:")


def test_a_block_that_would_not_verify_the_server_is_refused_and_sends_nothing(prefect_server: None, relay: tuple[_Inbox, int]) -> None:
    inbox, port = relay
    slug = _save("unverified-mail", port, verify=False)

    with pytest.raises(UnusableChannel, match="without verifying the server's certificate"):
        notify_customer(TENANT, "admin_consent-request", "subject", "body", slug, CONTACT)
    assert inbox.messages == []


def test_a_missing_block_is_named(prefect_server: None) -> None:
    with pytest.raises(UnusableChannel, match="'email-server-credentials/nobody'"):
        notify_customer(TENANT, "admin_consent-request", "subject", "body", "email-server-credentials/nobody", CONTACT)
