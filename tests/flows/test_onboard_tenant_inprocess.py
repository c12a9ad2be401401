"""The whole onboarding flow, in-process on a test Prefect server, against a sandbox on fast time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from prefect.artifacts import Artifact

from clients.http import VerifiedSession
from core.catalogue import StepName
from core.dispatch import sync_result
from core.requests import BlockNames, OnboardingRequest, StepModes
from core.results import Mode
from core.settings import EXPEL_TENANT_ID
from flows.onboard_tenant import onboard_tenant
from tasks.catalogue import CATALOGUE
from tests.sandbox_harness import SandboxHandle, sandbox_env, save_credential_blocks, start_sandbox

pytestmark = pytest.mark.slow  # needs a Prefect server

ORG = "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d"
FRESH = "1a1a1a1a-0000-4000-8000-000000000001"
QUIET = "1a1a1a1a-0000-4000-8000-000000000002"
GUIDED = "1a1a1a1a-0000-4000-8000-000000000003"
SCALE = 36000  # ten hours of scenario time per second

SCENARIO = {
    "replication_lag": "20s",
    "workbench": {"organizations": [{"id": ORG, "name": "Flow Customers"}],
                  "api_keys": [{"name": "onboarding", "organization": ORG, "generate": True}]},
    "tenants": [
        {"id": FRESH, "display_name": "Flow Fresh", "initial_domain": "flowfresh.onmicrosoft.com",
         "audit": {"enabled": False, "dehydrated": True, "activation_delay": "45m"}},
        {"id": QUIET, "display_name": "Flow Quiet", "initial_domain": "flowquiet.onmicrosoft.com",
         "audit": {"enabled": True}, "device": {"first_alert_delay": None}},
        {"id": GUIDED, "display_name": "Flow Guided", "initial_domain": "flowguided.onmicrosoft.com", "audit": {"enabled": True}},
    ],
}


@pytest.fixture(scope="module")
def fast_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    handle = start_sandbox(tmp_path_factory.mktemp("flow-sandbox"), SCENARIO, time_scale=SCALE)
    yield handle
    handle.stop()



@pytest.fixture
def blocks(prefect_server: None, fast_sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> BlockNames:
    fast_sandbox.reset()
    for key, value in sandbox_env(fast_sandbox).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("M365_ONBOARD_WAITS__TIME_SCALE", str(SCALE))
    monkeypatch.setenv("M365_ONBOARD_TIMING__CONSISTENCY_INTERVAL_S", "0.05")
    return save_credential_blocks(fast_sandbox)


def _request(tenant: str, name: str, blocks: BlockNames) -> OnboardingRequest:
    return OnboardingRequest(tenant_id=tenant, organization_name=name, provider_org_id=ORG, customer_contact_email="admin@customer.example", blocks=blocks)


def _artifact(key: str) -> str:
    """The latest version of a keyed artifact, as the UI's Artifacts page shows it."""
    artifact = sync_result(Artifact.get(key))
    return str(artifact.data) if artifact else ""


def test_a_fresh_tenant_is_onboarded_end_to_end(fast_sandbox: SandboxHandle, blocks: BlockNames) -> None:
    report = onboard_tenant(_request(FRESH, "Flow Fresh", blocks))
    assert report.outcome == "onboarded: alerts are flowing"
    state = fast_sandbox.tenant_state(FRESH)
    assert len(state["directory"]["users"]) == 1 and len(state["directory"]["partners"]) == 1
    assert state["exchange"]["unifiedAuditLogIngestionEnabled"] is True and state["exchange"]["isDehydrated"] is False
    devices = fast_sandbox.admin("GET", "workbench").json()["security_devices"]
    assert len([d for d in devices if d["tenant_id"] == FRESH and d["deleted_at"] is None]) == 1
    checklist = _artifact(f"onboarding-{FRESH}")
    assert "First alerts" in checklist and checklist.count("| completed") == 10
    assert "Evidence" in _artifact(f"report-{FRESH}")


def test_a_quiet_tenant_finishes_without_alerts_and_says_so(fast_sandbox: SandboxHandle, blocks: BlockNames) -> None:
    report = onboard_tenant(_request(QUIET, "Flow Quiet", blocks))
    assert report.outcome == "onboarded: data flowing, no alert in the alert window"


def test_a_guide_mode_step_waits_for_the_customers_admin_and_carries_on_once_the_change_is_seen(
    fast_sandbox: SandboxHandle, blocks: BlockNames, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("M365_ONBOARD_WAITS__CUSTOMER_CHANGE__INTERVAL_S", str(4 * 3600))  # a check every 0.4 s here
    graph = fast_sandbox.base_url("graph")

    def customers_admin() -> None:
        """Adds the partner by hand, as the guide tells the admin, once the flow has looked for it in guide mode."""
        deadline = time.monotonic() + 120
        while not [r for r in fast_sandbox.request_log(service="graph", tenant=GUIDED) if "crossTenantAccessPolicy/partners" in r["path"]]:
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)
        time.sleep(1)
        trust = {"isMfaAccepted": True, "isCompliantDeviceAccepted": True, "isHybridAzureADJoinedDeviceAccepted": True}
        response = VerifiedSession(fast_sandbox.ca_bundle).post(
            f"{graph}/v1.0/policies/crossTenantAccessPolicy/partners", timeout=30,
            headers={"Authorization": f"Bearer {fast_sandbox.token(GUIDED)}"},
            json={"tenantId": EXPEL_TENANT_ID, "inboundTrust": trust, "automaticUserConsentSettings": {"inboundAllowed": True}},
        )
        response.raise_for_status()

    admin = threading.Thread(target=customers_admin, daemon=True)
    admin.start()
    request = _request(GUIDED, "Flow Guided", blocks).model_copy(update={"modes": StepModes(cross_tenant_access=Mode.GUIDE)})
    report = onboard_tenant(request)
    admin.join(timeout=5)
    assert report.outcome == "onboarded: alerts are flowing"
    writes = [r for r in fast_sandbox.request_log(service="graph", method="POST", tenant=GUIDED) if "partners" in r["path"]]
    assert len(writes) == 1, "in guide mode the flow itself must not write the partner entry"
    assert len(fast_sandbox.tenant_state(GUIDED)["directory"]["partners"]) == 1
    assert report.steps[StepName.CROSS_TENANT_ACCESS].outcome == "converged"


def test_a_step_forced_to_plan_mode_writes_nothing_and_the_run_says_it_was_only_planned(fast_sandbox: SandboxHandle, blocks: BlockNames) -> None:
    request = _request(FRESH, "Flow Fresh", blocks).model_copy(update={"modes": StepModes(unified_audit_log=Mode.PLAN)})
    report = onboard_tenant(request)

    exchange_writes = [r for r in fast_sandbox.request_log(service="exchange", tenant=FRESH) if _is_exchange_write(r)]
    activity_writes = [r for r in fast_sandbox.request_log(service="management_activity", method="POST", tenant=FRESH)]
    assert exchange_writes == [] and activity_writes == [], "plan mode changed the audit log or started subscriptions"
    assert fast_sandbox.tenant_state(FRESH)["exchange"]["unifiedAuditLogIngestionEnabled"] is False
    assert report.outcome.startswith("planned: unified_audit_log ran in plan mode and changed nothing, so no milestone was waited for"), report.outcome
    assert report.steps[StepName.UNIFIED_AUDIT_LOG].outcome == "planned"
    checklist = _artifact(f"onboarding-{FRESH}")
    assert checklist.count("| planned not waited for: unified_audit_log ran in plan mode") == len(CATALOGUE.milestones()), checklist
    assert "| 2. Unified audit log enabled | planned unified_audit_log: update" in checklist, checklist
    assert checklist.count("| completed") == 5, checklist  # the tenant, consent, console and cross-tenant access, the device


def _is_exchange_write(entry: dict) -> bool:
    """An InvokeCommand whose cmdlet changes something; reads are Get-* (the sandbox logs the cmdlet as the operation)."""
    return not str(entry.get("operation") or "Get-").startswith("Get-")
