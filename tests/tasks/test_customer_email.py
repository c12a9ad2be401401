"""Customer messages by email through prefect-email's EmailServerCredentials block.

A local SMTP server (aiosmtpd) that requires STARTTLS, with a certificate from a test CA that the
client trusts through SSL_CERT_FILE, as a private mail relay would be set up.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import flow

from core.requests import TenantRequest
from tasks.admin_consent import CONSENT
from tasks.customer_messages import first_request, notify_customer
from tasks.errors import UnusableChannel
from tests.mail_relay import MailRelay

pytestmark = pytest.mark.slow  # needs a Prefect server

TENANT = TenantRequest(tenant_id="3c3c3c3c-0000-4000-8000-000000000001", organization_name="Mail Corp",
                       provider_org_id="0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d")
CONTACT = "admin@mailcorp.example"


@pytest.fixture
def relay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MailRelay]:
    relay = MailRelay(tmp_path)
    relay.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(relay.ca_cert))  # the client trusts the relay's CA
    monkeypatch.setenv("M365_ONBOARD_NOTIFICATIONS__EMAIL_FROM", "onboarding@provider.example")
    yield relay
    relay.stop()


def test_the_consent_request_is_mailed_to_the_contact_once_per_run(prefect_server: None, relay: MailRelay) -> None:
    slug = relay.save_block("customer-mail")
    subject, body = first_request(TENANT, CONTACT, CONSENT, "Open https://login.example/adminconsent?client_id=abc", "Expel")

    @flow
    def onboarding_run() -> list[bool]:
        # a re-executed run calls it again: the cached result stands in, nothing is sent twice
        return [notify_customer(TENANT, "admin_consent-request", subject, body, slug, CONTACT) for _ in range(2)]

    assert onboarding_run() == [True, True]
    [(sender, recipients, _)] = relay.messages
    [mail] = relay.mails()
    assert (sender, recipients, mail["To"], mail["Subject"]) == ("onboarding@provider.example", [CONTACT], CONTACT, subject)
    text = mail.get_content()
    assert "grant admin consent" in text and "adminconsent?client_id=abc" in text and not text.startswith("To:")


def test_an_execution_that_died_after_sending_does_not_send_again(prefect_server: None, relay: MailRelay) -> None:
    slug = relay.save_block("customer-mail-marker")

    @flow
    def onboarding_run() -> list[bool]:
        # .fn bypasses the task's cache, as a process killed before the result was stored does
        return [notify_customer.fn(TENANT, "admin_consent-request", "Consent", "body", slug, CONTACT) for _ in range(2)]

    assert onboarding_run() == [True, True]
    assert len(relay.messages) == 1


def test_a_block_that_would_not_verify_the_server_is_refused_and_sends_nothing(prefect_server: None, relay: MailRelay) -> None:
    slug = relay.save_block("unverified-mail", verify=False)

    with pytest.raises(UnusableChannel, match="without verifying the server's certificate"):
        notify_customer(TENANT, "admin_consent-request", "subject", "body", slug, CONTACT)
    assert relay.messages == []


def test_a_missing_block_is_named(prefect_server: None) -> None:
    with pytest.raises(UnusableChannel, match="'email-server-credentials/nobody'"):
        notify_customer(TENANT, "admin_consent-request", "subject", "body", "email-server-credentials/nobody", CONTACT)
