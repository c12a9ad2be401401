"""The whole onboarding flow, in-process on a test Prefect server, against a sandbox on fast time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.artifacts import Artifact
from prefect.testing.utilities import prefect_test_harness

from blocks.credentials import ProviderAppCredentials, WorkbenchCredentials
from flows.onboard_tenant import OnboardingRequest, onboard_tenant
from tasks.runtime import BlockNames
from tests.sandbox_harness import SandboxHandle, sandbox_settings, start_sandbox

ORG = "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d"
FRESH = "1a1a1a1a-0000-4000-8000-000000000001"
QUIET = "1a1a1a1a-0000-4000-8000-000000000002"
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
    ],
}


@pytest.fixture(scope="module")
def fast_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    handle = start_sandbox(tmp_path_factory.mktemp("flow-sandbox"), SCENARIO, time_scale=SCALE)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def blocks(prefect_server: None, fast_sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> BlockNames:
    fast_sandbox.reset()
    for key, value in sandbox_settings(fast_sandbox).model_dump(exclude_none=True).items():
        if isinstance(value, str | int | float | Path):
            monkeypatch.setenv(f"M365_ONBOARD_{key.upper()}", str(value))
    monkeypatch.setenv("M365_ONBOARD_WAITS__TIME_SCALE", str(SCALE))
    monkeypatch.setenv("M365_ONBOARD_TIMING__CONSISTENCY_INTERVAL_S", "0.05")
    suffix = uuid.uuid4().hex[:8]
    names = BlockNames(provider_app=f"app-{suffix}", workbench=f"wb-{suffix}")
    ProviderAppCredentials(client_id=fast_sandbox.client_id, client_secret=fast_sandbox.app_secret()).save(names.provider_app)
    WorkbenchCredentials(api_key=fast_sandbox.workbench_key()).save(names.workbench)
    return names


def _request(tenant: str, name: str, blocks: BlockNames) -> OnboardingRequest:
    return OnboardingRequest(tenant_id=tenant, organization_name=name, provider_org_id=ORG, customer_contact_email="admin@customer.example", blocks=blocks)


def _artifact(key: str) -> str:
    """The latest version of a keyed artifact, as the UI's Artifacts page shows it."""
    artifact = Artifact.get(key)
    return str(artifact.data) if artifact else ""


def test_a_fresh_tenant_is_onboarded_end_to_end(fast_sandbox: SandboxHandle, blocks: BlockNames) -> None:
    report = onboard_tenant(_request(FRESH, "Flow Fresh", blocks))
    assert report["outcome"] == "onboarded: alerts are flowing"
    state = fast_sandbox.tenant_state(FRESH)
    assert len(state["directory"]["users"]) == 1 and len(state["directory"]["partners"]) == 1
    assert state["exchange"]["unifiedAuditLogIngestionEnabled"] is True and state["exchange"]["isDehydrated"] is False
    devices = fast_sandbox.admin("GET", "workbench").json()
    assert str(devices).count(FRESH) >= 1
    checklist = _artifact(f"onboarding-{FRESH}")
    assert "First alerts" in checklist and checklist.count("| completed") == 10
    assert "Evidence" in _artifact(f"report-{FRESH}")


def test_a_quiet_tenant_finishes_without_alerts_and_says_so(fast_sandbox: SandboxHandle, blocks: BlockNames) -> None:
    report = onboard_tenant(_request(QUIET, "Flow Quiet", blocks))
    assert report["outcome"] == "onboarded: data flowing, no alert in the alert window"
