"""Least privilege, as the README's permission table promises it.

Two provider apps, each in a sandbox of its own, registered with exactly one column of the table:
the read column (guide and plan modes) and the apply column. With exactly those permissions and
roles, a tenant onboards end to end: the read-only app in guide mode, the customer's Global
Administrator making each change the guide asks for (through the same APIs, as the portal does),
and the provider's app writing nothing in the tenant; the apply app in apply mode. Then each
permission and role of each column is taken away in a tenant of its own: what the run stops with,
before anything is written (admin consent incomplete, apply not possible, a step blocked), names
exactly that permission.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clients.exchange import ExchangeAdminClient
from clients.graph import GraphClient
from core.requests import OnboardingRequest
from core.results import Mode, Outcome
from core.settings import EXPEL_TENANT_ID, GLOBAL_READER_TEMPLATE_ID
from flows.onboard_tenant import onboard_tenant
from tasks import admin_consent
from tasks.catalogue import CATALOGUE
from tasks.errors import ModeNotPossible
from tasks.preflight import preflight
from tasks.runtime import tenant_context
from tasks.step import run_step
from tests.prefect_harness import in_process_server
from tests.readme_tables import Column, permission_table
from tests.sandbox_harness import SandboxHandle, sandbox_env, sandbox_settings, save_credential_blocks, start_sandbox

ORG = "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d"
SCALE = 36000  # ten hours of scenario time per second
TABLE = permission_table({str(step) for step in CATALOGUE.permission_table()})


def _column(index: int) -> Column:
    return Column(frozenset().union(*(row[index].permissions for row in TABLE.values())), frozenset().union(*(row[index].roles for row in TABLE.values())))


COLUMNS = {Mode.GUIDE: _column(0), Mode.APPLY: _column(1)}
FULL = {Mode.GUIDE: "4d4d4d4d-0000-4000-8000-000000000000", Mode.APPLY: "4e4e4e4e-0000-4000-8000-000000000000"}


def _without(mode: Mode) -> dict[str, str]:
    """A tenant per permission or role of the column, each lacking just that one: {what is taken away: tenant id}."""
    column = COLUMNS[mode]
    names = sorted(column.permissions) + [f"role:{r}" for r in sorted(column.roles)]
    return {name: f"{FULL[mode][:-3]}{i:03d}" for i, name in enumerate(names, start=1)}


def _scenario(mode: Mode) -> dict[str, Any]:
    column = COLUMNS[mode]

    def tenant(tenant_id: str, name: str, withhold: list[str], roles: list[str]) -> dict[str, Any]:
        return {"id": tenant_id, "display_name": name, "initial_domain": f"lp{tenant_id[-3:]}{mode.value}.onmicrosoft.com",
                "consent": {"withhold": withhold, "app_directory_roles": roles},
                "audit": {"enabled": False, "activation_delay": "30m"}, "device": {"first_alert_delay": "20h"}}

    roles = sorted(column.roles)
    tenants = [tenant(FULL[mode], f"Least {mode.value}", [], roles)]
    for missing, tenant_id in _without(mode).items():
        role = missing.removeprefix("role:")
        tenants.append(tenant(tenant_id, f"Without {missing}", [] if role != missing else [missing], [r for r in roles if r != role]))
    return {
        "replication_lag": "20s",
        "provider": {"app": {"permissions": sorted(column.permissions)}},
        "workbench": {"organizations": [{"id": ORG, "name": "Least Privilege"}], "api_keys": [{"name": "onboarding", "organization": ORG, "generate": True}]},
        "tenants": tenants,
    }


@pytest.fixture(scope="module", params=[Mode.GUIDE, Mode.APPLY], ids=["read column", "apply column"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mode, SandboxHandle]]:
    """The sandbox whose provider app has exactly one column of the README's table, and the mode that column is for."""
    mode: Mode = request.param
    handle = start_sandbox(tmp_path_factory.mktemp(f"least-{mode.value}"), _scenario(mode), time_scale=SCALE)
    yield mode, handle
    handle.stop()


def _refusal(sandbox: SandboxHandle, tenant: str, mode: Mode) -> str:
    """What a run of this tenant stops with before anything is written, in this mode ('' when it may go on).

    The flow's own checks, in its order: admin consent complete, then the preflight (apply forced for
    every step in apply mode; in guide mode the preflight chooses, and a step it cannot read is blocked).
    """
    ctx = tenant_context(tenant, "", ORG, sandbox_settings(sandbox), sandbox.client_id, sandbox.app_secret, None)
    consent = run_step(admin_consent.STEP, ctx, Mode.APPLY)
    if consent.outcome != Outcome.CONVERGED:
        return str(admin_consent.consent_error(consent))
    forced: dict[str, Mode] | None = {str(spec.name): Mode.APPLY for spec in CATALOGUE.with_modes()} if mode == Mode.APPLY else None
    try:
        choices = preflight(ctx, forced)
    except ModeNotPossible as exc:
        return str(exc)
    assert {c.mode for c in choices.values()} <= {mode, "blocked"}, choices
    return "; ".join(c.reason for c in choices.values() if c.mode == "blocked")


def test_with_exactly_its_column_the_app_may_go_on_and_without_any_one_it_is_stopped_naming_it(app: tuple[Mode, SandboxHandle]) -> None:
    mode, sandbox = app
    assert _refusal(sandbox, FULL[mode], mode) == ""
    stopped = {missing: _refusal(sandbox, tenant, mode) for missing, tenant in _without(mode).items()}
    assert {missing: missing in why for missing, why in stopped.items()} == dict.fromkeys(stopped, True), stopped


prefect_server = pytest.fixture(scope="module")(in_process_server)


def _customers_admin(sandbox: SandboxHandle, tenant: str) -> None:
    """As the tenant's Global Administrator, once the run has looked: what guide mode asks for, through the same APIs."""
    deadline = time.monotonic() + 120
    while not [r for r in sandbox.request_log(service="graph", tenant=tenant) if "crossTenantAccessPolicy/partners" in r["path"]]:
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)

    def bearer(resource: str) -> str:
        return f"Bearer {sandbox.admin('POST', f'tenants/{tenant}/admin-token', json={'resource': resource}).json()['access_token']}"

    graph = GraphClient(sandbox.base_url("graph"), authorization=lambda: bearer("graph"), ca_bundle=sandbox.ca_bundle, tenant_id=tenant)
    guest = graph.create_invitation(f"{ORG}@soc.expel.io", "Expel SOC", "https://myapps.microsoft.com", send_message=False)
    graph.create_role_assignment(GLOBAL_READER_TEMPLATE_ID, guest.invited_user_id)
    trust = {"isMfaAccepted": True, "isCompliantDeviceAccepted": True, "isHybridAzureADJoinedDeviceAccepted": True}
    graph.create_partner({"tenantId": EXPEL_TENANT_ID, "inboundTrust": trust, "automaticUserConsentSettings": {"inboundAllowed": True}})
    exchange = ExchangeAdminClient(sandbox.base_url("exchange"), authorization=lambda: bearer("exchange"), ca_bundle=sandbox.ca_bundle, tenant_id=tenant)
    exchange.set_unified_audit_log_ingestion(True)


@pytest.mark.slow  # a Prefect server
@pytest.mark.timeout(600)
def test_with_exactly_its_column_the_app_onboards_a_tenant_end_to_end_in_its_mode(
    app: tuple[Mode, SandboxHandle], prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    mode, sandbox = app
    tenant = FULL[mode]
    for key, value in sandbox_env(sandbox).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("M365_ONBOARD_WAITS__TIME_SCALE", str(SCALE))
    monkeypatch.setenv("M365_ONBOARD_TIMING__CONSISTENCY_INTERVAL_S", "0.05")
    monkeypatch.setenv("M365_ONBOARD_WAITS__CUSTOMER_CHANGE__INTERVAL_S", str(4 * 3600))
    blocks = save_credential_blocks(sandbox)
    admin = threading.Thread(target=_customers_admin, args=(sandbox, tenant), daemon=True)
    if mode == Mode.GUIDE:
        admin.start()

    report = onboard_tenant(OnboardingRequest(tenant_id=tenant, organization_name=f"Least {mode.value}", provider_org_id=ORG,
                                              customer_contact_email="admin@customer.example", blocks=blocks))
    assert report.outcome.startswith("onboarded"), report.outcome
    assert {str(step): result.mode for step, result in report.steps.items() if str(step) in {str(s.name) for s in CATALOGUE.with_modes()}} == {
        str(s.name): mode for s in CATALOGUE.with_modes()}
    app_writes = [f"{r['service']} {r['method']} {r['path']} {r.get('operation')}" for r in sandbox.request_log(tenant=tenant)
                  if r.get("app_id") == sandbox.client_id and r["service"] in ("graph", "exchange")
                  and (r["method"] != "GET" if r["service"] == "graph" else not str(r.get("operation") or "Get-").startswith("Get-"))]
    assert (app_writes == []) == (mode == Mode.GUIDE), app_writes  # guide mode: the customer's admin made every change
