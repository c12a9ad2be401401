"""The resumer looks before it wakes: a suspended run is re-executed only when there is something to do.

A test Prefect server and the sandbox (its clock only moves when the test moves it). The waiting
onboarding run is a flow run suspended at a pause key, as ``durable_wait`` leaves it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas import OrchestrationResult
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.states import Running, Suspended

from core.catalogue import StepName
from core.requests import BlockNames, TenantRequest
from core.results import Mode
from core.tags import WAIT_CHECK_TAG
from flows.resume_onboarding import resume_onboarding
from flows.scheduled_checks import PreCheck
from tasks import unified_audit_log
from tasks.step_tasks import step_task
from tests.sandbox_harness import SandboxHandle, sandbox_env, save_credential_blocks, start_sandbox

pytestmark = pytest.mark.slow  # needs a Prefect server

ORG = "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d"
LATE = "2b2b2b2b-0000-4000-8000-000000000001"
AUDIT_PENDING = "2b2b2b2b-0000-4000-8000-000000000002"
SCENARIO: dict[str, Any] = {
    "replication_lag": "0s",
    "workbench": {"organizations": [{"id": ORG, "name": "Precheck"}], "api_keys": [{"name": "onboarding", "organization": ORG, "generate": True}]},
    "tenants": [{"id": LATE, "display_name": "Late Consent", "initial_domain": "lateconsent.onmicrosoft.com", "consent": {"given": "late", "after": "2h"}},
                {"id": AUDIT_PENDING, "display_name": "Audit Pending", "initial_domain": "auditpending.onmicrosoft.com",
                 "audit": {"enabled": False, "activation_delay": "45m"}}],
}


SCENARIO_NAMES = {t["id"]: t["display_name"] for t in SCENARIO["tenants"]}


@pytest.fixture(scope="module")
def still_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    handle = start_sandbox(tmp_path_factory.mktemp("precheck-sandbox"), SCENARIO, time_scale=1)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def client(prefect_server: None) -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("resume-onboarding")
        client.create_deployment(flow_id=flow_id, name="resume-onboarding", entrypoint="flows/resume_onboarding.py:resume_onboarding")
        onboarding_flow = client.create_flow_from_name("onboard-tenant")
        client.create_deployment(flow_id=onboarding_flow, name="onboard-tenant", entrypoint="flows/onboard_tenant.py:onboard_tenant")
        yield client


@pytest.fixture
def blocks(client: SyncPrefectClient, still_sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> BlockNames:
    still_sandbox.reset()
    for key, value in sandbox_env(still_sandbox).items():
        monkeypatch.setenv(key, value)
    return save_credential_blocks(still_sandbox)


def _suspended_run(client: SyncPrefectClient, pause_key: str) -> uuid.UUID:
    deployment = client.read_deployment_by_name("onboard-tenant/onboard-tenant")
    run = client.create_flow_run_from_deployment(deployment.id, state=Running())
    suspended: OrchestrationResult[Any] = client.set_flow_run_state(run.id, Suspended(timeout_seconds=3600, pause_key=pause_key))
    assert suspended.status.value == "ACCEPT", suspended.details
    return run.id


def _precheck(blocks: BlockNames, wake_in: timedelta, tenant: str = LATE, wait: StepName = StepName.ADMIN_CONSENT) -> PreCheck:
    request = TenantRequest(tenant_id=tenant, organization_name=SCENARIO_NAMES[tenant], provider_org_id=ORG)
    return PreCheck(wait=wait, request=request, blocks=blocks, suspend_key=f"{wait}-0", interval_s=600, wake_by=datetime.now(UTC) + wake_in)


def _successors(client: SyncPrefectClient, run_id: uuid.UUID) -> list:
    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[WAIT_CHECK_TAG])))
    return [r for r in runs if r.parameters.get("flow_run_id") == str(run_id)]


def _state_name(client: SyncPrefectClient, run_id: uuid.UUID) -> str:
    state = client.read_flow_run(run_id).state
    return state.name if state and state.name else ""


def test_not_yet_consented_the_run_sleeps_on_and_the_next_check_is_scheduled(
    client: SyncPrefectClient, still_sandbox: SandboxHandle, blocks: BlockNames
) -> None:
    run_id = _suspended_run(client, "admin_consent-0")
    seq = still_sandbox.request_log()[-1]["seq"] if still_sandbox.request_log() else 0

    assert resume_onboarding(str(run_id), _precheck(blocks, timedelta(hours=2)), 0) == "still-waiting"

    assert _state_name(client, run_id) == "Suspended"
    served = still_sandbox.request_log(since=seq)
    assert served, "the pre-check observed the tenant"
    assert {r["method"] for r in served} <= {"GET", "POST"} and not [r for r in served if r["method"] == "POST" and "/token" not in r["path"]], served
    [successor] = _successors(client, run_id)
    assert successor.parameters["prechecks"] == 1 and successor.parameters["precheck"]["suspend_key"] == "admin_consent-0"
    due_in = (successor.expected_start_time - datetime.now(UTC)).total_seconds()
    assert 500 < due_in <= 600, due_in


def test_once_consent_is_given_the_resumer_wakes_the_run(client: SyncPrefectClient, still_sandbox: SandboxHandle, blocks: BlockNames) -> None:
    run_id = _suspended_run(client, "admin_consent-0")
    still_sandbox.advance("3h")  # the customer's admin consents after 2 h of scenario time

    assert resume_onboarding(str(run_id), _precheck(blocks, timedelta(hours=2)), 0) == "resumed"

    assert _state_name(client, run_id) == "Resuming"  # a worker would now re-execute it
    assert _successors(client, run_id) == []


def test_at_its_stall_time_the_run_is_woken_without_looking(client: SyncPrefectClient, still_sandbox: SandboxHandle, blocks: BlockNames) -> None:
    run_id = _suspended_run(client, "admin_consent-0")
    seq = still_sandbox.request_log()[-1]["seq"] if still_sandbox.request_log() else 0

    assert resume_onboarding(str(run_id), _precheck(blocks, timedelta(seconds=-1)), 0) == "resumed"

    assert _state_name(client, run_id) == "Resuming"
    assert still_sandbox.request_log(since=seq) == []


def test_a_check_that_fails_wakes_the_run_so_that_its_own_check_reports_it(client: SyncPrefectClient, blocks: BlockNames) -> None:
    run_id = _suspended_run(client, "admin_consent-0")
    missing = BlockNames(provider_app="no-such-block", workbench=blocks.workbench)

    assert resume_onboarding(str(run_id), _precheck(missing, timedelta(hours=2)), 0) == "resumed"

    assert _state_name(client, run_id) == "Resuming"


def test_a_run_waiting_at_another_pause_is_left_to_that_pause(client: SyncPrefectClient, blocks: BlockNames) -> None:
    run_id = _suspended_run(client, "device_healthy-2")

    assert resume_onboarding(str(run_id), _precheck(blocks, timedelta(hours=2)), 0) == "stale"

    assert _state_name(client, run_id) == "Suspended"
    assert _successors(client, run_id) == []


def test_a_pre_check_writes_nothing_and_wakes_the_run_when_the_provider_has_its_own_part_to_do(
    client: SyncPrefectClient, still_sandbox: SandboxHandle, blocks: BlockNames
) -> None:
    """The resumer holds no claim on the tenant: the subscriptions that end the audit wait are the run's to start."""
    request = TenantRequest(tenant_id=AUDIT_PENDING, organization_name="Audit Pending", provider_org_id=ORG)
    step_task(unified_audit_log.SPEC).fn(request, blocks, Mode.APPLY)  # turned on; in effect 45 scenario minutes later
    run_id = _suspended_run(client, "audit_activation-0")
    precheck = _precheck(blocks, timedelta(hours=2), AUDIT_PENDING, StepName.AUDIT_ACTIVATION)
    still_sandbox.advance("1h")
    seq = still_sandbox.request_log()[-1]["seq"]

    assert resume_onboarding(str(run_id), precheck, 0) == "resumed"

    writes = [r for r in still_sandbox.request_log(since=seq) if r["method"] not in ("GET",) and not (r["operation"] or "").startswith("Get-")
              and r["service"] != "login"]
    assert writes == [], "the pre-check wrote"
