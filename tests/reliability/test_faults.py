"""Many tenants onboarded while the services misbehave as they do on a bad day.

A real Prefect server, the project deployed as the team deploys it (``deploy``: blocks, shared
result storage, JSON results, automations), a process worker, the sandbox on compressed time and a
private mail relay. Throughout: 20 % of Graph calls throttled with a Retry-After (half of them an
HTTP-date), 5 % answered 503, slow Exchange answers, Workbench answers dripping in, a connection
reset after a POST was applied (the guest invitation, the device registration) and one before a
POST was applied (the partner entry). While every run waits for its first alerts, Graph and
Workbench are out for longer than a check's whole retry budget. The mail relay is down when the
tenants that consent late are sent the consent request.

What the team checks afterwards: every run Completed; each tenant has exactly one SOC guest, one
Global Reader assignment, one partner entry, one device and one consent email; and, from the
sandbox's request log, no request was sent again before the Retry-After it was given.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from core.requests import BlockNames
from tests.deployed import ORG, accept_consent, deployed_stack, onboard, one_of_each, running_sandbox, states, wait_until_final, worker_env
from tests.mail_relay import MailRelay
from tests.prefect_harness import PrefectStack
from tests.sandbox_harness import SandboxHandle
from tests.support import keep_figures

pytestmark = pytest.mark.slow  # a Prefect server, a worker and the sandbox

SCALE = 3600  # an hour of scenario time per second
FIRST_ALERT = "150h"  # 150 s here: every run is in its alert wait, suspended, when the outages come
LATE = {"5e5e5e5e-0000-4000-8000-000000000002", "5e5e5e5e-0000-4000-8000-000000000005"}  # their admin consents from the email
TENANTS: dict[str, dict[str, Any]] = {
    "5e5e5e5e-0000-4000-8000-000000000001": {"display_name": "Fault Fresh", "audit": {"enabled": False, "dehydrated": True, "activation_delay": "45m"}},
    "5e5e5e5e-0000-4000-8000-000000000002": {"display_name": "Fault Late", "consent": {"given": "never"}},
    "5e5e5e5e-0000-4000-8000-000000000003": {"display_name": "Fault Configured", "audit": {"enabled": True},
                                             "existing": {"guests": [{"email": f"{ORG}@soc.expel.io"}], "partners": [{}]}},
    "5e5e5e5e-0000-4000-8000-000000000004": {"display_name": "Fault Audited", "audit": {"enabled": True}},
    "5e5e5e5e-0000-4000-8000-000000000005": {"display_name": "Fault Late Too", "consent": {"given": "never"}, "audit": {"enabled": True}},
    "5e5e5e5e-0000-4000-8000-000000000006": {"display_name": "Fault Plain", "audit": {"enabled": False, "activation_delay": "30m"}},
}
SCENARIO: dict[str, Any] = {
    "replication_lag": "20s",
    "workbench": {"organizations": [{"id": ORG, "name": "Fault Customers"}], "api_keys": [{"name": "onboarding", "organization": ORG, "generate": True}]},
    "tenants": [{"id": tenant, "initial_domain": f"fault{tenant[-1]}.onmicrosoft.com", "device": {"first_alert_delay": FIRST_ALERT}, **spec}
                for tenant, spec in TENANTS.items()],
}
OUTAGE_S = 25  # real seconds: longer than a check with all its retries here (about 8 s), as 10 minutes is in production
THROUGHOUT = [
    {"service": "graph", "kind": "throttle", "probability": 0.1, "retry_after": "1s", "seed": 1},
    {"service": "graph", "kind": "throttle", "probability": 0.1, "retry_after": "2s", "retry_after_format": "http-date", "seed": 2},
    {"service": "graph", "kind": "unavailable", "probability": 0.05, "seed": 3},
    {"service": "exchange", "kind": "slow", "probability": 0.2, "delay": "1s", "seed": 4},
    {"service": "workbench", "kind": "drip", "method": "GET", "probability": 0.1, "delay": "1s", "seed": 5},
    {"service": "graph", "kind": "reset", "method": "POST", "path_contains": "invitations", "after_apply": True, "count": 1},
    {"service": "workbench", "kind": "reset", "method": "POST", "path_contains": "security_devices", "after_apply": True, "count": 1},
    {"service": "graph", "kind": "reset", "method": "POST", "path_contains": "partners", "after_apply": False, "count": 1},
]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    with running_sandbox(tmp_path_factory.mktemp("fault-sandbox"), SCENARIO, SCALE) as handle:
        yield handle


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailRelay]:
    relay = MailRelay(tmp_path_factory.mktemp("relay"))  # not started: the mail server is down at first
    yield relay
    relay.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sandbox: SandboxHandle, relay: MailRelay) -> Iterator[tuple[PrefectStack, BlockNames, str]]:
    with deployed_stack(tmp_path_factory.mktemp("prefect"), sandbox) as (prefect, blocks):
        with temporary_settings({PREFECT_API_URL: prefect.api_url}):
            mail = relay.save_block(f"mail-{blocks.workbench}")
        yield prefect, blocks, mail


def _env(sandbox: SandboxHandle, relay: MailRelay, mail_block: str) -> dict[str, str]:
    return worker_env(sandbox, SCALE, {
        "M365_ONBOARD_WAITS__SUSPEND_FROM_S": str(3 * 3600),  # only the alert wait's checks (4 h apart) release the worker
        "M365_ONBOARD_TIMING__STEP_RETRIES": "2",  # a check's whole retry budget is a few seconds here
        "M365_ONBOARD_TIMING__STEP_RETRY_BACKOFF_S": "1",
        "M365_ONBOARD_TIMING__HTTP_RETRIES": "4",
        "M365_ONBOARD_NOTIFICATIONS__CUSTOMER_BLOCK": mail_block,
        "M365_ONBOARD_NOTIFICATIONS__EMAIL_FROM": "onboarding@provider.example",
        "M365_ONBOARD_NOTIFICATIONS__MESSAGE_RETRY_DELAYS_S": "[1]",
        "SSL_CERT_FILE": str(relay.ca_cert),  # the worker trusts the relay's CA (the sandbox's is given per client)
    })


def _consent_from_the_emails(sandbox: SandboxHandle, relay: MailRelay, timeout_s: float) -> dict[str, str]:
    """As each late tenant's admin: open the consent link of the email and accept. Returns each tenant's link."""
    links: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while set(links) < LATE:
        assert time.monotonic() < deadline, f"consent emails received: {[m['Subject'] for m in relay.mails()]}"
        for mail in relay.mails():
            text = mail.get_content()
            found = re.search(r"https://\S+/([0-9a-f-]{36})/adminconsent\?\S+", text)
            if found and found[1] in LATE and found[1] not in links:
                accept_consent(sandbox, found[0])
                links[found[1]] = found[0]
        time.sleep(1)
    return links


def _undelivered() -> set[tuple[str, str]]:
    """(tenant, message kind) of every onboarding.message.undelivered event."""
    from prefect.events.filters import EventFilter, EventNameFilter

    with get_client(sync_client=True) as client:
        page = client.read_events(filter=EventFilter(event=EventNameFilter(name=["onboarding.message.undelivered"])), limit=50)
    return {(e.payload["tenant_id"], e.payload["kind"]) for e in page.events}


def _in_alert_wait() -> set[str]:
    """The tenants whose run has begun to wait for its first alerts (its onboarding.step.waiting event)."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    query = EventFilter(event=EventNameFilter(name=["onboarding.step.waiting"]), resource=EventResourceFilter(labels={"onboarding.step": ["first_alerts"]}))
    with get_client(sync_client=True) as client:
        page = client.read_events(filter=query, limit=50)
    return {e.payload["tenant_id"] for e in page.events}


IN_FLIGHT_S = 0.05  # a request that reached the sandbox this soon after an answer left was sent before the client read it
SKEW_S = 0.1  # the client counts from when it read the answer, a moment after it left (two busy cores)


def _sent_before_retry_after(log: list[dict[str, Any]]) -> list[str]:
    """Requests sent again (same client-request-id) that reached the sandbox before the Retry-After they were given had passed.

    Counted from when the answer left; login is left out (msal's own HTTP, not throttled here).
    """
    def at(entry: dict[str, Any]) -> float:
        return datetime.fromisoformat(entry["received_at"]).timestamp()

    early = []
    # The same request sent again (its client-request-id). Other requests of the same app and tenant
    # from another process (a resumer's pre-check) are not held yet: one gate per process, see README.
    key = ("service", "tenant_id", "app_id", "client_request_id")
    for i, answer in enumerate(log):
        wait = answer.get("retry_after_s")
        if wait is None or answer["service"] == "login":
            continue
        left = at(answer) + answer["duration_ms"] / 1000
        for later in log[i + 1:]:
            if all(later.get(k) == answer.get(k) for k in key) and left + IN_FLIGHT_S < at(later) < left + wait - SKEW_S:
                early.append(f"{later['method']} {later['path']} {at(later) - left:.2f}s after a {answer['status']} with Retry-After {wait}s")
    return early


@pytest.mark.timeout(1200)
def test_every_tenant_completes_through_throttling_outages_resets_and_a_mail_server_down(
    stack: tuple[PrefectStack, BlockNames, str], sandbox: SandboxHandle, relay: MailRelay
) -> None:
    prefect, blocks, mail_block = stack
    for fault in THROUGHOUT:
        sandbox.add_fault(**fault)
    with temporary_settings({PREFECT_API_URL: prefect.api_url}):
        prefect.start_worker(_env(sandbox, relay, mail_block))
        runs = {tenant: onboard(tenant, spec["display_name"], blocks, email=f"admin@fault{tenant[-1]}.example")
                for tenant, spec in TENANTS.items()}
        # The consent requests fail while the relay is down; it comes up once both late tenants have waited a while.
        deadline = time.monotonic() + 240
        while not {r["tenant_id"] for r in sandbox.request_log(service="login") if r["status"] >= 400} >= LATE:
            assert time.monotonic() < deadline, "the late tenants never asked for a token"
            time.sleep(1)
        time.sleep(8)  # the first try and its retry, both refused
        relay.start()
        consented = _consent_from_the_emails(sandbox, relay, timeout_s=240)
        deadline = time.monotonic() + 600
        while _in_alert_wait() < set(TENANTS):
            assert time.monotonic() < deadline, {TENANTS[t]["display_name"]: states(r)[-1] for t, r in runs.items()}
            time.sleep(1)
        # One after the other: while Graph is out, a check never gets as far as Workbench.
        sandbox.add_fault(service="graph", kind="outage", lasts=f"{OUTAGE_S * SCALE}s")
        sandbox.add_fault(service="workbench", kind="outage", starts_after=f"{OUTAGE_S * SCALE}s", lasts=f"{OUTAGE_S * SCALE}s")
        final = wait_until_final(list(runs.values()), timeout_s=900)
        undelivered = _undelivered()
        histories = {TENANTS[t]["display_name"]: states(r) for t, r in runs.items()}  # read while the test's server is the API

    log = sandbox.request_log()
    faults = sandbox.admin("GET", "faults").json()
    early = _sent_before_retry_after(log)
    keep_figures("faults", {"faults": [{k: f["spec"].get(k) for k in ("service", "kind", "probability")} | {"hits": f["hits"]} for f in faults],
                            "requests": len(log), "tenants": len(TENANTS), "completed": sum(1 for s in final.values() if s == "Completed"),
                            "answers_with_retry_after": sum(1 for e in log if e.get("retry_after_s") is not None), "sent_before_retry_after": len(early)})
    logs = "\n".join(p.read_text()[-4000:] for p in prefect.log_dir.glob("worker-*.log"))
    assert set(final.values()) == {"Completed"}, f"{histories}\n{logs}"
    for tenant in TENANTS:
        assert one_of_each(sandbox, tenant) == {"guests": 1, "role_assignments": 1, "partners": 1, "devices": 1}, TENANTS[tenant]["display_name"]
    assert early == [], "\n".join(early)
    # One consent email per late tenant, though its first tries met the relay down; nobody else got one.
    assert sorted(str(m["To"]) for m in relay.mails()) == sorted(f"admin@fault{t[-1]}.example" for t in LATE), [m["Subject"] for m in relay.mails()]
    assert set(consented) == LATE
    assert undelivered == {(t, "admin_consent-request") for t in LATE}, undelivered  # each said so once, to the team
    assert all(f["hits"] > 0 for f in faults), [(f["spec"]["kind"], f["hits"]) for f in faults]
