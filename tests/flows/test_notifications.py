"""Stalled steps notify people: a real Prefect server (its trigger and action services running), the
automations applied from code, a process worker, the sandbox on compressed time, and a local webhook
receiver behind Prefect's own CustomWebhookNotificationBlock for the team and for the customer.

Five tenants: consent never comes, the device stays unhealthy, the audit log never activates, the
audit feed delivers nothing (its subscriptions are restarted once), and a healthy one. Each produces exactly the
expected messages, and the healthy one only its completion.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.deployments import run_deployment
from prefect.events.filters import EventFilter, EventNameFilter
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr

from automations.apply import apply_automations
from blocks.credentials import ProviderAppCredentials, WorkbenchCredentials
from core.dispatch import sync_result
from core.settings import OnboardingSettings
from tests.prefect_harness import POOL, PrefectStack, start_prefect
from tests.sandbox_harness import SandboxHandle, sandbox_settings, start_sandbox
from tests.support import present
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow  # needs a Prefect server

ORG = "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d"
SCALE = 3600  # an hour of scenario time per second
NO_CONSENT, UNHEALTHY, NO_AUDIT, HEALTHY, SILENT = (f"3c3c3c3c-0000-4000-8000-00000000000{i}" for i in range(1, 6))
NAMES = {NO_CONSENT: "Never Consents", UNHEALTHY: "Unhealthy Device", NO_AUDIT: "Audit Never Active", HEALTHY: "Healthy Tenant",
         SILENT: "Silent Feed"}
SCENARIO = {
    "workbench": {"organizations": [{"id": ORG, "name": "Notified Customers"}],
                  "api_keys": [{"name": "onboarding", "organization": ORG, "generate": True}]},
    "tenants": [
        {"id": NO_CONSENT, "display_name": NAMES[NO_CONSENT], "initial_domain": "never.onmicrosoft.com", "consent": {"given": "never"}},
        {"id": UNHEALTHY, "display_name": NAMES[UNHEALTHY], "initial_domain": "unhealthy.onmicrosoft.com", "audit": {"enabled": True},
         "device": {"health": "stays_unhealthy", "health_check_delay": "0s", "health_check_interval": "30m"}},
        {"id": NO_AUDIT, "display_name": NAMES[NO_AUDIT], "initial_domain": "noaudit.onmicrosoft.com",
         "audit": {"enabled": False, "activation_delay": "1000h"}},
        {"id": HEALTHY, "display_name": NAMES[HEALTHY], "initial_domain": "healthy.onmicrosoft.com", "audit": {"enabled": True},
         "device": {"health_check_delay": "0s", "first_data_delay": "0s", "first_alert_delay": "0s"}},
        {"id": SILENT, "display_name": NAMES[SILENT], "initial_domain": "silent.onmicrosoft.com",
         "audit": {"enabled": False, "activation_delay": "0s", "first_content_delay": "1000h"},
         "device": {"health_check_delay": "0s", "first_data_delay": "1000h"}},
    ],
}
# Thresholds in scenario time (divided by SCALE at run time): consent reminder 20 s, escalation 40 s, limit 90 s.
WAITS = {
    "ADMIN_CONSENT": {"EXPECTED_S": 10 * 3600, "REMIND_S": 20 * 3600, "STALL_S": 40 * 3600, "LIMIT_S": 90 * 3600, "INTERVAL_S": 4 * 3600},
    "AUDIT_ACTIVATION": {"INTERVAL_S": 2 * 3600, "LIMIT_S": 30 * 3600},  # stalled at 2 h: alerted at Prefect's 10 s minimum
    "DEVICE_HEALTHY": {"INTERVAL_S": 2 * 3600, "LIMIT_S": 30 * 3600},
    "FIRST_DATA": {"INTERVAL_S": 2 * 3600, "LIMIT_S": 30 * 3600},  # stalled at 12 h
}


TEAM_MESSAGES = 11  # the team messages the assertions below name (1 + 2 + 3 + 2 + 3), each outcome, stall and retry


def _env(sandbox: SandboxHandle) -> dict[str, str]:
    env = {f"M365_ONBOARD_{k.upper()}": str(v) for k, v in sandbox_settings(sandbox).model_dump(exclude_none=True).items()
           if isinstance(v, str | int | float | Path)}
    env |= {
        "M365_ONBOARD_WAITS__TIME_SCALE": str(SCALE),
        "M365_ONBOARD_WAITS__SUSPEND_FROM_S": str(10 * 24 * 3600),  # pauses stay in-process: this test is about messages
        "M365_ONBOARD_TIMING__CONSISTENCY_INTERVAL_S": "0.1",
        "M365_ONBOARD_NOTIFICATIONS__TEAM_BLOCK": "custom-webhook/team",
        "M365_ONBOARD_NOTIFICATIONS__CUSTOMER_BLOCK": "custom-webhook/customer",
    }
    for wait, values in WAITS.items():
        env |= {f"M365_ONBOARD_WAITS__{wait}__{key}": str(value) for key, value in values.items()}
    return env


def _team_messages(webhook: WebhookReceiver) -> list[dict]:
    return [m for m in webhook.messages if m["channel"] == "team"]


def _notifications_done(client: SyncPrefectClient) -> int | None:
    """How many team notifications the automations sent or failed to send; None while one triggered is not done yet."""
    def actions(name: str) -> list[str]:
        page = client.read_events(filter=EventFilter(event=EventNameFilter(name=[name])), limit=50)
        events = list(page.events)
        while page.next_page:
            page = client.read_events_page(str(page.next_page))
            events.extend(page.events)
        return [e.payload["invocation"] for e in events if e.payload.get("action_type") == "send-notification"]

    triggered = actions("prefect.automation.action.triggered")
    done = actions("prefect.automation.action.executed") + actions("prefect.automation.action.failed")
    return len(done) if sorted(done) == sorted(triggered) else None


def _settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> OnboardingSettings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return OnboardingSettings()


@pytest.mark.timeout(900)
def test_each_stalled_tenant_produces_exactly_its_notifications(tmp_path: Path, webhook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sandbox").mkdir()
    sandbox = start_sandbox(tmp_path / "sandbox", SCENARIO, time_scale=SCALE)
    stack: PrefectStack = start_prefect(tmp_path / "prefect")
    try:
        stack.cli("work-pool", "create", POOL, "--type", "process")
        stack.cli("deploy", "--all", "--no-prompt")
        env = _env(sandbox)
        with temporary_settings({PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
            for channel in ("team", "customer"):
                webhook.save_block(channel)
            report = apply_automations(client, _settings(env, monkeypatch))
            assert len(report.created) == 18, report  # 5 crash recovery, 8 stalls, 5 other team alerts
            suffix = uuid.uuid4().hex[:6]
            ProviderAppCredentials(client_id=sandbox.client_id, client_secret=SecretStr(sandbox.app_secret())).save(f"app-{suffix}")
            WorkbenchCredentials(api_key=SecretStr(sandbox.workbench_key())).save(f"wb-{suffix}")
            stack.start_worker(env)
            runs = {
                tenant: sync_result(run_deployment(
                    "onboard-tenant/onboard-tenant", timeout=0,
                    parameters={"request": {"tenant_id": tenant, "organization_name": name, "provider_org_id": ORG,
                                            "customer_contact_email": f"admin@{name.split()[0].lower()}.example",
                                            "blocks": {"provider_app": f"app-{suffix}", "workbench": f"wb-{suffix}"}}},
                )).id
                for tenant, name in NAMES.items()
            }
            deadline = time.monotonic() + 600
            while not all((s := client.read_flow_run(r).state) is not None and s.is_final() for r in runs.values()):
                assert time.monotonic() < deadline, {t: client.read_flow_run(r).state for t, r in runs.items()}
                time.sleep(2)
            final = {tenant: present(client.read_flow_run(r).state).name for tenant, r in runs.items()}
            assert final == {NO_CONSENT: "Failed", UNHEALTHY: "Failed", NO_AUDIT: "Failed", HEALTHY: "Completed", SILENT: "Failed"}, final
            # The runs' last events still have alerts to trigger: wait until each team message is in and every
            # notification the automations triggered has been sent (or failed), then nothing more is on its way.
            deadline = time.monotonic() + 120
            while not (len(_team_messages(webhook)) >= TEAM_MESSAGES and _notifications_done(client) == len(_team_messages(webhook))):
                assert time.monotonic() < deadline, (_notifications_done(client), sorted(m["subject"] for m in _team_messages(webhook)))
                time.sleep(1)
        stops = [r for r in sandbox.request_log(service="management_activity", method="POST", tenant=SILENT) if r["path"].endswith("/stop")]
        assert len(stops) == 5, "each silent subscription is restarted once, not on every check"
    finally:
        stack.stop()
        sandbox.stop()

    def subjects(channel: str, name: str) -> list[str]:
        return sorted(m["subject"] for m in webhook.messages if m["channel"] == channel and name in m["subject"] + m["body"])

    assert subjects("team", NAMES[HEALTHY]) == [f"Onboarded: {NAMES[HEALTHY]}"]
    assert subjects("customer", NAMES[HEALTHY]) == []
    assert subjects("team", NAMES[NO_CONSENT]) == sorted([f"Onboarding stalled: {NAMES[NO_CONSENT]}, admin_consent",
                                                          f"Onboarding run onboard-{NAMES[NO_CONSENT]} Failed"])
    assert subjects("customer", NAMES[NO_CONSENT]) == sorted([
        f"Expel onboarding of {NAMES[NO_CONSENT]}: please grant admin consent to the provider's app",
        f"Reminder: Expel onboarding of {NAMES[NO_CONSENT]} is waiting for you",
    ])
    assert subjects("team", NAMES[UNHEALTHY]) == sorted([
        f"Onboarding stalled: {NAMES[UNHEALTHY]}, device_healthy", f"Automatic retry: {NAMES[UNHEALTHY]}, device_healthy",
        f"Onboarding run onboard-{NAMES[UNHEALTHY]} Failed"])
    assert subjects("team", NAMES[NO_AUDIT]) == sorted([f"Onboarding stalled: {NAMES[NO_AUDIT]}, audit_activation",
                                                        f"Onboarding run onboard-{NAMES[NO_AUDIT]} Failed"])
    assert subjects("team", NAMES[SILENT]) == sorted([
        f"Onboarding stalled: {NAMES[SILENT]}, first_data", f"Automatic retry: {NAMES[SILENT]}, first_data",
        f"Onboarding run onboard-{NAMES[SILENT]} Failed"])
    assert subjects("customer", NAMES[UNHEALTHY]) == subjects("customer", NAMES[NO_AUDIT]) == subjects("customer", NAMES[SILENT]) == []
    restart = next(m["body"] for m in webhook.messages if m["subject"] == f"Automatic retry: {NAMES[SILENT]}, first_data")
    assert "restarted 5 Management Activity subscription(s) that delivered nothing" in restart, restart

    stalled = next(m["body"] for m in webhook.messages if m["subject"] == f"Onboarding stalled: {NAMES[NO_AUDIT]}, audit_activation")
    assert NO_AUDIT in stalled and "waiting for more than 2 h" in stalled and "Next action: Check Get-AdminAuditLogConfig" in stalled
    assert "/runs/flow-run/" in stalled, stalled
    request = next(m["body"] for m in webhook.messages if m["subject"].startswith("Expel onboarding of Never"))
    assert "To: admin@never.example" in request and "adminconsent" in request.lower(), request
    retry = next(m["body"] for m in webhook.messages if m["subject"] == f"Automatic retry: {NAMES[UNHEALTHY]}, device_healthy")
    assert "consent and every permission are still granted" in retry, retry
    secrets = [sandbox.app_secret(), sandbox.workbench_key()]
    assert not any(secret in json.dumps(webhook.messages) for secret in secrets)
