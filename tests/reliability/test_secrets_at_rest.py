"""After a real onboarding, no secret is anywhere a person or an attacker could read.

The production path, as the team runs it: ``m365-onboard deploy --client-id … --certificate …
--private-key …`` with the Workbench key from the environment, and a second deploy whose app
block holds a client secret from the environment; a real Prefect server, a process worker, the
sandbox, a mail relay for the customer's emails and a webhook for the team's notifications.
Two tenants are onboarded through the CLI, one on each credential block; the second waits for
its admin, is reminded, stalls (the team is told), and consents from the email's link.

The app's client secret, the certificate's private key and the Workbench key are canaries (unique
values given to the sandbox), and the sandbox issues JWT access tokens. Afterwards every place is
searched: each table of the Prefect database (rows as SQLite returns them, and the raw database
files), the result storage, every process's log, the emails and webhook bodies, the CLI's output.
Each canary is searched whole, in 16-character pieces and as base64; a token by its JWT shape.
"""

from __future__ import annotations

import base64
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks.credentials import ProviderAppCredentials
from core.dispatch import sync_result
from tests.deployed import HEARTBEAT_S, ORG, accept_consent, m365_onboard, one_of_each, running_sandbox, states, wait_until_final, worker_env
from tests.mail_relay import MailRelay
from tests.prefect_harness import PrefectStack, start_prefect
from tests.sandbox_harness import SandboxHandle
from tests.support import keep_figures
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow  # a Prefect server, a worker, the sandbox and a mail relay

SCALE = 3600
CLIENT_SECRET = f"CanaryClientSecret~{uuid.uuid4().hex}"
WORKBENCH_KEY = f"CanaryWorkbenchKey-{uuid.uuid4().hex}"
CERT_TENANT, SECRET_TENANT = "7c7c7c7c-0000-4000-8000-000000000001", "7c7c7c7c-0000-4000-8000-000000000002"
NAMES = {CERT_TENANT: "Canary Certificate", SECRET_TENANT: "Canary Secret"}
SCENARIO: dict[str, Any] = {
    "replication_lag": "20s",
    "provider": {"app": {"secrets": [{"name": "primary", "value": CLIENT_SECRET}], "certificates": [{"name": "primary", "generate": True}]}},
    "workbench": {"organizations": [{"id": ORG, "name": "Canary Customers"}],
                  "api_keys": [{"name": "onboarding", "organization": ORG, "value": WORKBENCH_KEY}]},
    "tenants": [
        {"id": CERT_TENANT, "display_name": NAMES[CERT_TENANT], "initial_domain": "canarycert.onmicrosoft.com",
         "audit": {"enabled": False, "activation_delay": "30m"}, "device": {"first_alert_delay": "30h"}},
        {"id": SECRET_TENANT, "display_name": NAMES[SECRET_TENANT], "initial_domain": "canarysecret.onmicrosoft.com",
         "consent": {"given": "never"}, "audit": {"enabled": True}, "device": {"first_alert_delay": "30h"}},
    ],
}
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    with running_sandbox(tmp_path_factory.mktemp("canary-sandbox"), SCENARIO, SCALE) as handle:
        yield handle


def _cli(prefect: PrefectStack, env: dict[str, str], *args: str) -> str:
    """``m365-onboard …``'s whole output (stdout and stderr): what a person sees of it."""
    result = m365_onboard(prefect, env, *args)
    return result.stdout + result.stderr


def _canaries(private_key_pem: str) -> dict[str, list[str]]:
    """Every piece a leak would show: each secret whole, in 16-character pieces and as base64, and each line of the key's PEM body."""
    def pieces(secret: str) -> list[str]:
        b64 = [base64.b64encode(secret[shift:].encode()).decode()[4:-4] for shift in range(3)]  # the three alignments
        return [secret, *(secret[i:i + 16] for i in range(0, len(secret) - 15, 4)), *b64]

    body = [line for line in private_key_pem.splitlines() if line and not line.startswith("-----")]
    return {"client secret": pieces(CLIENT_SECRET), "Workbench API key": pieces(WORKBENCH_KEY),
            "certificate private key": [*body, "PRIVATE KEY-----"]}


def _database_rows(db: Path) -> tuple[dict[str, int], str]:
    """Each table of the Prefect database with its row count, and every row as text (values as SQLite returns them)."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts, texts = {}, []
        for table in tables:
            rows = connection.execute(f'SELECT * FROM "{table}"').fetchall()
            counts[table] = len(rows)
            texts += [repr(row) for row in rows]
        return counts, "\n".join(texts)
    finally:
        connection.close()


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (the database files, logs, results, the Prefect home) as text, by path."""
    return {str(p.relative_to(folder)): p.read_bytes().decode("latin-1") for p in sorted(folder.rglob("*")) if p.is_file()}


def _hits(places: dict[str, str], canaries: dict[str, list[str]]) -> list[str]:
    found = [f"{secret} in {place}" for place, text in places.items() for secret, pieces in canaries.items() if any(p in text for p in pieces)]
    return found + [f"a JWT (access token or client assertion) in {place}" for place, text in places.items() if JWT.search(text)]


def _consent_link(relay: MailRelay, tenant: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for mail in relay.mails():
            found = re.search(rf"https://\S+/{tenant}/adminconsent\?\S+", mail.get_content())
            if found:
                return found[0]
        time.sleep(1)
    raise AssertionError(f"no consent email for {tenant}: {[m['Subject'] for m in relay.mails()]}")


def _wait_for_team_message(webhook: WebhookReceiver, about: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(about in m["subject"] for m in webhook.messages):
        assert time.monotonic() < deadline, f"no team message about {about!r}: {[m['subject'] for m in webhook.messages]}"
        time.sleep(1)


@pytest.mark.timeout(1200)
def test_no_secret_or_token_is_left_anywhere_after_onboarding_on_the_production_path(
    tmp_path: Path, sandbox: SandboxHandle, webhook: WebhookReceiver
) -> None:
    relay = MailRelay(tmp_path / "relay")
    relay.start()
    prefect = start_prefect(tmp_path / "prefect")
    certificate = sandbox.app_certificate()
    env = worker_env(sandbox, SCALE, {
        "M365_ONBOARD_RECOVERY__HEARTBEAT_S": str(HEARTBEAT_S),
        "M365_ONBOARD_RESULTS__LOCAL_PATH": str(tmp_path / "prefect" / "results"),
        "M365_ONBOARD_WAITS__SUSPEND_FROM_S": str(3 * 3600),  # the device waits suspend: their results are read back on resume
        # The first alert comes 30 s after the first data and is looked for every 12 s: however slow the machine, the first look
        # finds none, so each run suspends at least once.
        "M365_ONBOARD_WAITS__FIRST_ALERTS__INTERVAL_S": str(12 * 3600),
        "M365_ONBOARD_WAITS__ADMIN_CONSENT__REMIND_S": str(4 * 3600),
        "M365_ONBOARD_WAITS__ADMIN_CONSENT__STALL_S": str(12 * 3600),
        "M365_ONBOARD_NOTIFICATIONS__TEAM_BLOCK": "custom-webhook/team",
        "M365_ONBOARD_NOTIFICATIONS__CUSTOMER_BLOCK": "email-server-credentials/customer-mail",
        "M365_ONBOARD_NOTIFICATIONS__EMAIL_FROM": "onboarding@provider.example",
        "SSL_CERT_FILE": str(relay.ca_cert),  # the worker trusts the relay's CA
    })
    secrets = {"M365_ONBOARD_WORKBENCH_API_KEY": WORKBENCH_KEY, "M365_ONBOARD_WORKBENCH_ORGANIZATION_ID": ORG}
    outputs: dict[str, str] = {}
    try:
        with temporary_settings({PREFECT_API_URL: prefect.api_url}):
            webhook.save_block("team")
            relay.save_block("customer-mail")
            outputs["deploy (certificate)"] = _cli(prefect, env | secrets, "deploy", "--client-id", sandbox.client_id,
                                                   "--certificate", certificate["cert"], "--private-key", certificate["key"],
                                                   "--provider-app-block", "app-certificate", "--workbench-block", "workbench")
            outputs["deploy (secret)"] = _cli(prefect, env | secrets | {"M365_ONBOARD_APP_CLIENT_SECRET": CLIENT_SECRET},
                                              "deploy", "--client-id", sandbox.client_id,
                                              "--provider-app-block", "app-secret", "--workbench-block", "workbench")
            prefect.start_worker(env)
            for tenant, block in ((CERT_TENANT, "app-certificate"), (SECRET_TENANT, "app-secret")):
                outputs[f"onboard {tenant}"] = _cli(prefect, env, "onboard", "--tenant-id", tenant, "--organization", NAMES[tenant],
                                                    "--provider-org", ORG, "--contact", f"admin@{tenant[-1]}.example",
                                                    "--provider-app-block", block, "--workbench-block", "workbench")
            runs = {tenant: _run_id(outputs[f"onboard {tenant}"], tenant) for tenant in NAMES}
            link = _consent_link(relay, SECRET_TENANT, timeout_s=240)
            _wait_for_team_message(webhook, f"{NAMES[SECRET_TENANT]}, admin_consent", timeout_s=240)  # stalled: the team is told
            accept_consent(sandbox, link)
            final = wait_until_final(list(runs.values()), timeout_s=600)
            outputs["status"] = _cli(prefect, env, "status")
            outputs["status --json"] = _cli(prefect, env, "status", "--json")
            history = {tenant: states(run) for tenant, run in runs.items()}
            used = {name: sync_result(ProviderAppCredentials.load(name)) for name in ("app-certificate", "app-secret")}
    finally:
        prefect.stop()
        relay.stop()

    # It was a real onboarding on both credentials: each run completed, was suspended and resumed, and each tenant has one of each.
    assert set(final.values()) == {"Completed"}, history
    assert all("Suspended" in h for h in history.values()), history
    assert {t: one_of_each(sandbox, t) for t in NAMES} == {t: {"guests": 1, "role_assignments": 1, "partners": 1, "devices": 1} for t in NAMES}
    assert (used["app-certificate"].client_secret, used["app-secret"].certificate_pem) == (None, None)  # each run had one kind only
    assert len(relay.mails()) >= 2 and webhook.raw  # the consent email, a reminder, and the team's messages

    canaries = _canaries(Path(certificate["key"]).read_text())
    counts, rows = _database_rows(prefect.home / "prefect.db")
    assert counts["log"] > 0 and counts["flow_run_state"] > 0 and counts["events"] > 0 and counts["artifact"] > 0, counts
    places = {f"database row ({len(counts)} tables)": rows, **{f"file {p}": t for p, t in _files(tmp_path / "prefect").items()},
              **{f"email {i}": raw.decode("latin-1") for i, (_, _, raw) in enumerate(relay.messages)},
              **{f"team message {i}": body.decode("latin-1") for i, (_, body) in enumerate(webhook.raw)},
              **{f"output of {command}": text for command, text in outputs.items()}}
    assert any(p.startswith("file prefect-home/prefect.db") for p in places) and any(p.endswith("worker-0.log") for p in places), list(places)
    # The search finds what it looks for: the sandbox's own copies of the secrets, and a token it issues now.
    controls = {"key file": Path(certificate["key"]).read_text(), "secret": f"x{CLIENT_SECRET}x", "key": WORKBENCH_KEY[5:25],
                "token": sandbox.msal_app(CERT_TENANT, CLIENT_SECRET).acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])["access_token"]}
    assert len(_hits(controls, canaries)) == len(controls), _hits(controls, canaries)
    hits = _hits(places, canaries)
    keep_figures("secrets_at_rest", {"places_searched": len(places), "database_tables": len(counts), "database_rows": sum(counts.values()),
                                     "canaries": sorted(canaries), "hits": len(hits)})
    assert hits == []


def _run_id(output: str, tenant: str) -> uuid.UUID:
    """The run ``onboard`` printed for ``tenant`` (its link ends with the run's id)."""
    found = re.search(rf"{tenant}\s+\S*?([0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}})\s*$", output, re.MULTILINE)
    assert found, output
    return uuid.UUID(found[1])
