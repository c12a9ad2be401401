"""End to end as the team runs it: a real Prefect server, prefect.yaml deployed, the automations
applied, a process worker, and the sandbox on compressed time. Waits suspend the runs (no worker
process held); the worker is SIGKILLed and the server restarted while runs wait, and the worker is
SIGKILLed in the middle of a step; new workers finish every run, with no change made twice, no event
emitted twice, and a second run for the same tenant refused. A wait check that crashes is restarted,
so the run it would have woken is not left asleep.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Crashed
from typer.testing import CliRunner

from automations.apply import apply_automations
from core.catalogue import StepName
from core.settings import OnboardingSettings, RecoverySettings
from core.tags import WAIT_CHECK_TAG
from m365_onboarding.cli import app
from tasks.catalogue import CATALOGUE
from tests.deployed import HEARTBEAT_S, ORG, TERMINAL, devices, onboard, save_blocks, states, worker_env
from tests.prefect_harness import POOL, PrefectStack, start_prefect
from tests.sandbox_harness import SandboxHandle, start_sandbox
from tests.support import present

pytestmark = pytest.mark.slow  # needs a Prefect server

TENANTS = {
    "2b2b2b2b-0000-4000-8000-000000000001": "Deployed Fresh",
    "2b2b2b2b-0000-4000-8000-000000000002": "Deployed Configured",
}
CRASH_TENANT = "2b2b2b2b-0000-4000-8000-000000000003"
CHECK_CRASH_TENANT = "2b2b2b2b-0000-4000-8000-000000000004"
SCALE = 7200  # two hours of scenario time per second
SCENARIO: dict[str, Any] = {
    "replication_lag": "20s",
    "workbench": {"organizations": [{"id": ORG, "name": "E2E Customers"}],
                  "api_keys": [{"name": "onboarding", "organization": ORG, "generate": True}]},
    "tenants": [
        {"id": "2b2b2b2b-0000-4000-8000-000000000001", "display_name": "Deployed Fresh", "initial_domain": "e2efresh.onmicrosoft.com",
         "audit": {"enabled": False, "activation_delay": "45m"}, "device": {"first_alert_delay": "100h"}},
        {"id": CRASH_TENANT, "display_name": "Deployed Crash", "initial_domain": "e2ecrash.onmicrosoft.com",
         "audit": {"enabled": True}, "device": {"first_alert_delay": "2h"}},
        {"id": CHECK_CRASH_TENANT, "display_name": "Deployed Check Crash", "initial_domain": "e2echeck.onmicrosoft.com",
         "audit": {"enabled": True}, "device": {"first_alert_delay": "100h"}},
        {"id": "2b2b2b2b-0000-4000-8000-000000000002", "display_name": "Deployed Configured", "initial_domain": "e2econf.onmicrosoft.com",
         "audit": {"enabled": True}, "device": {"first_alert_delay": "90h"},
         "existing": {"guests": [{"email": f"{ORG}@soc.expel.io"}],
                      "partners": [{"inbound_trust": {"isMfaAccepted": True, "isCompliantDeviceAccepted": True, "isHybridAzureADJoinedDeviceAccepted": True},
                                    "automatic_user_consent_settings": {"inboundAllowed": True}}]}},
    ],
}
ALREADY_GUESTS = {t["id"] for t in SCENARIO["tenants"] if t.get("existing", {}).get("guests")}  # their SOC guest exists: never invited
WAITS = {StepName.ADMIN_CONSENT, *(w.name for w in CATALOGUE.milestones())}  # what a run of these tenants can suspend in


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectStack]:
    stack = start_prefect(tmp_path_factory.mktemp("prefect"))
    try:
        stack.cli("work-pool", "create", POOL, "--type", "process")
        stack.cli("deploy", "--all", "--no-prompt")
        with temporary_settings({PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
            report = apply_automations(client, OnboardingSettings(recovery=RecoverySettings(heartbeat_s=HEARTBEAT_S)))
            assert len(report.created) == 5, report
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    handle = start_sandbox(tmp_path_factory.mktemp("e2e-sandbox"), SCENARIO, time_scale=SCALE)
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def own_workers(stack: PrefectStack) -> Iterator[None]:
    """Each test starts its own workers; none is left to pick up the next test's runs."""
    yield
    stack.stop_workers()


def _worker_env(sandbox: SandboxHandle) -> dict[str, str]:
    return worker_env(sandbox, SCALE, {
        # Checks of the alert window 60 h apart (30 s here): both runs sit suspended long enough to kill the worker.
        "M365_ONBOARD_WAITS__FIRST_ALERTS__EXPECTED_S": str(72 * 3600),
        "M365_ONBOARD_WAITS__FIRST_ALERTS__STALL_S": str(96 * 3600),
        "M365_ONBOARD_WAITS__FIRST_ALERTS__LIMIT_S": str(7 * 24 * 3600),
        "M365_ONBOARD_WAITS__FIRST_ALERTS__INTERVAL_S": str(60 * 3600),
    })


def _events(client, tenant: str, expected_completed: int = 10, wait_s: float = 20) -> list[tuple[str, str]]:
    """(event, step) pairs of the tenant's onboarding events, once the event pipeline has stored them."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    query = EventFilter(event=EventNameFilter(prefix=["onboarding.step."]), resource=EventResourceFilter(id=[f"m365.tenant.{tenant}"]))
    deadline = time.monotonic() + wait_s
    while True:
        page = client.read_events(filter=query, limit=50)
        events = list(page.events)
        while page.next_page:
            page = client.read_events_page(page.next_page)
            events.extend(page.events)
        pairs = [(e.event, e.resource.get("onboarding.step")) for e in events]
        if sum(1 for event, _ in pairs if event == "onboarding.step.completed") >= expected_completed or time.monotonic() > deadline:
            return pairs
        time.sleep(1)


def _status(expect: Callable[[dict], bool], wait_s: float = 30) -> dict[str, dict]:
    """`m365-onboard status --json` by tenant id, once every listed tenant meets ``expect`` (events arrive a moment late)."""
    deadline = time.monotonic() + wait_s
    while True:
        result = CliRunner().invoke(app, ["status", "--json"])
        assert result.exit_code == 0, result.output
        rows = {row["tenant_id"]: row for row in json.loads(result.stdout)}
        if all(t in rows and expect(rows[t]) for t in TENANTS) or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def _anything_running(client) -> bool:
    """Whether any flow run (a resumer included) is executing right now."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    active = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])))
    return bool(client.read_flow_runs(flow_run_filter=active))


@pytest.mark.timeout(600)
def test_deployed_onboarding_survives_a_killed_worker_and_a_server_restart_while_waiting(stack: PrefectStack, sandbox: SandboxHandle) -> None:
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        blocks = save_blocks(sandbox)
        worker = stack.start_worker(_worker_env(sandbox))
        runs = {tenant: onboard(tenant, name, blocks) for tenant, name in TENANTS.items()}
        first_tenant = next(iter(TENANTS))
        # The same tenant spelled as people paste it: braces and upper case.
        duplicate = onboard("{" + first_tenant.upper() + "}", TENANTS[first_tenant], blocks)
        killed = status_seen = False
        deadline = time.monotonic() + 420
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                now = {tenant: client.read_flow_run(run_id).state for tenant, run_id in runs.items()}
                if not killed and all(s and s.name == "Suspended" for s in now.values()) and not _anything_running(client):
                    if not status_seen:  # what the team sees while the runs wait: the step, for what, since and until when
                        waiting = _status(lambda row: (row["run_state"], row["step_state"]) == ("Suspended", "waiting"))
                        for tenant, name in TENANTS.items():
                            row = waiting[tenant]
                            assert (row["organization"], row["run_state"], row["step_state"], row["stalled"]) == (name, "Suspended", "waiting", False), row
                            assert row["current_step"] in WAITS and row["waiting_for"] and row["since"] and row["until"], row
                        status_seen = True
                        continue  # that took a while: look at the states again before the crash
                    stack.kill_worker(worker)  # crash while every run waits: no wait may be lost
                    stack.restart_server()  # and the server restarts too, on the same database
                    killed = True
                    stack.start_worker(_worker_env(sandbox))
                duplicate_state = client.read_flow_run(duplicate).state
                if all(s and s.type.value in TERMINAL for s in [*now.values(), duplicate_state]):
                    break
                time.sleep(1)
        assert killed, "no run ever suspended"
        for tenant, run_id in runs.items():
            history = states(run_id)
            final = history[-1]
            assert final == "Completed", f"{TENANTS[tenant]}: {history}\n" + "\n".join(p.read_text()[-3000:] for p in stack.log_dir.glob("worker-*.log"))
            assert "Suspended" in history and "Resuming" in history
        with get_client(sync_client=True) as client:
            refused = present(client.read_flow_run(duplicate).state)
            assert refused.type.value == "FAILED" and "already being onboarded" in (refused.message or ""), refused
            done = _status(lambda row: row["current_step"] is None)
            assert {t: (done[t]["run_state"], done[t]["current_step"]) for t in TENANTS} == {t: ("Completed", None) for t in TENANTS}
            for tenant in TENANTS:
                transitions = _events(client, tenant)
                assert len(transitions) == len(set(transitions)), f"an event was emitted twice: {transitions}"
                assert sum(1 for event, _ in transitions if event == "onboarding.step.completed") == 10
    for tenant in TENANTS:
        state = sandbox.tenant_state(tenant)
        assert len(state["directory"]["users"]) == 1 and len(state["directory"]["partners"]) == 1
        invited = len([r for r in sandbox.request_log(service="graph", method="POST", tenant=tenant) if "invitations" in r["path"]])
        assert invited == (0 if tenant in ALREADY_GUESTS else 1), f"{TENANTS[tenant]}: {invited} invitation(s)"
        assert len(devices(sandbox, tenant)) == 1


@pytest.mark.timeout(600)
def test_a_run_whose_worker_is_killed_in_the_middle_of_a_step_is_restarted_and_changes_nothing_twice(
    stack: PrefectStack, sandbox: SandboxHandle
) -> None:
    # The invitation is slow: the worker dies while the sandbox is still creating the guest.
    fault = sandbox.add_fault(service="graph", kind="slow", method="POST", path_contains="invitations", tenant_id=CRASH_TENANT, count=1, delay="15s")
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        blocks = save_blocks(sandbox)
        worker = stack.start_worker(_worker_env(sandbox))
        run_id = onboard(CRASH_TENANT, "Deployed Crash", blocks)
        deadline = time.monotonic() + 240
        while not any(f["id"] == fault["id"] and f["hits"] == 1 for f in sandbox.admin("GET", "faults").json()):
            assert time.monotonic() < deadline, f"the invitation never came: {states(run_id)}"
            time.sleep(0.5)
        stack.kill_worker(worker)  # mid-step: the run's process dies with it, the run stays Running
        assert states(run_id)[-1] == "Running"
        stack.start_worker(_worker_env(sandbox))
        deadline = time.monotonic() + 420
        with get_client(sync_client=True) as client:
            while (state := client.read_flow_run(run_id).state) is None or state.type.value not in TERMINAL or state.name == "Crashed":
                assert time.monotonic() < deadline, f"not recovered: {states(run_id)}"
                time.sleep(2)
        history = states(run_id)
        assert history[-1] == "Completed", history
        crashed = history.index("Crashed")
        assert "AwaitingRecovery" in history[crashed:], history
        with get_client(sync_client=True) as client:
            transitions = _events(client, CRASH_TENANT)
            assert len(transitions) == len(set(transitions)), f"an event was emitted twice: {transitions}"
    state = sandbox.tenant_state(CRASH_TENANT)["directory"]
    assert len(state["users"]) == 1, state["users"]
    guest = state["users"][0]["id"]
    assert len([a for a in state["roleAssignments"] if a["principalId"] == guest]) == 1, state["roleAssignments"]
    assert len(state["partners"]) == 1
    assert len(devices(sandbox, CRASH_TENANT)) == 1
    invitations = [r for r in sandbox.request_log(service="graph", method="POST", tenant=CRASH_TENANT) if "invitations" in r["path"]]
    assert len(invitations) == 1, "the restarted run invited the guest again instead of finding the one already created"


def _scheduled_checks(client, run_id: uuid.UUID) -> list:
    """The wait checks (resumer runs) the suspended run ``run_id`` has scheduled and that have not run yet."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags
    from prefect.client.schemas.objects import StateType

    scheduled = FlowRunFilter(tags=FlowRunFilterTags(all_=[WAIT_CHECK_TAG]), state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])))
    return [r for r in client.read_flow_runs(flow_run_filter=scheduled) if r.parameters.get("flow_run_id") == str(run_id)]


@pytest.mark.timeout(600)
def test_a_wait_check_that_crashes_is_restarted_and_the_run_still_completes(stack: PrefectStack, sandbox: SandboxHandle) -> None:
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        blocks = save_blocks(sandbox)
        stack.start_worker(_worker_env(sandbox))
        run_id = onboard(CHECK_CRASH_TENANT, "Deployed Check Crash", blocks)
        deadline = time.monotonic() + 300
        with get_client(sync_client=True) as client:
            while not ((state := client.read_flow_run(run_id).state) and state.name == "Suspended" and (checks := _scheduled_checks(client, run_id))):
                assert time.monotonic() < deadline and (state is None or not state.is_final()), f"never suspended: {states(run_id)}"
                time.sleep(1)
            # As when the worker cannot start the check's process (the worker reports it Crashed): without a
            # restart the suspended run has no check left and sleeps until a person wakes it.
            [check] = checks
            client.set_flow_run_state(check.id, Crashed(message="infrastructure failed to start (test)"), force=True)
            deadline = time.monotonic() + 300
            while (state := client.read_flow_run(run_id).state) is None or not state.is_final():
                assert time.monotonic() < deadline, f"the run was left waiting: {states(run_id)}; check: {states(check.id)}"
                time.sleep(2)
        history = states(run_id)
        assert history[-1] == "Completed", history
        check_history = states(check.id)
        after_crash = check_history[check_history.index("Crashed"):]
        assert "AwaitingRecovery" in after_crash and after_crash[-1] == "Completed", check_history
    assert len(devices(sandbox, CHECK_CRASH_TENANT)) == 1
