"""Never two executions for one tenant: runs started together, spellings of one GUID, a Crashed run.

A real server with the project deployed, a process worker and the sandbox. Two runs for the same
tenant started at the same moment, one of them with the GUID in braces and upper case, as people
paste it: one onboards, the other is refused at once. A new run while the tenant's earlier run is
Crashed (crash recovery restarts it): refused, naming the Crashed run; the restarted run finishes.
Each tenant ends with one guest, one role assignment, one partner entry and one device.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Crashed

from core.requests import BlockNames
from tests.deployed import ORG, deployed_stack, onboard, one_of_each, running_sandbox, states, wait_until_final, worker_env
from tests.prefect_harness import PrefectStack
from tests.sandbox_harness import SandboxHandle
from tests.support import present

pytestmark = pytest.mark.slow  # a Prefect server, a worker and the sandbox

SCALE = 7200
TOGETHER = "6f6f6f6f-0000-4000-8000-00000000000a"
CRASHED = "6f6f6f6f-0000-4000-8000-00000000000b"
SCENARIO: dict[str, Any] = {
    "replication_lag": "20s",
    "workbench": {"organizations": [{"id": ORG, "name": "Concurrency Customers"}],
                  "api_keys": [{"name": "onboarding", "organization": ORG, "generate": True}]},
    "tenants": [
        {"id": TOGETHER, "display_name": "Twice Started", "initial_domain": "twice.onmicrosoft.com", "audit": {"enabled": True},
         "device": {"first_alert_delay": "2h"}},
        {"id": CRASHED, "display_name": "Crashed Before", "initial_domain": "crashed.onmicrosoft.com", "audit": {"enabled": True},
         "device": {"first_alert_delay": "2h"}},
    ],
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    with running_sandbox(tmp_path_factory.mktemp("concurrency-sandbox"), SCENARIO, SCALE) as handle:
        yield handle


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sandbox: SandboxHandle) -> Iterator[tuple[PrefectStack, BlockNames]]:
    with deployed_stack(tmp_path_factory.mktemp("prefect"), sandbox) as deployed:
        yield deployed


@pytest.fixture(autouse=True)
def own_workers(stack: tuple[PrefectStack, BlockNames]) -> Iterator[None]:
    yield
    stack[0].stop_workers()


def _refusal(run_id: uuid.UUID) -> str:
    with get_client(sync_client=True) as client:
        state = present(client.read_flow_run(run_id).state)
    return f"{state.type.value}: {state.message}"


@pytest.mark.timeout(600)
def test_two_runs_started_together_for_one_tenant_in_two_spellings_make_one_onboarding(
    stack: tuple[PrefectStack, BlockNames], sandbox: SandboxHandle
) -> None:
    prefect, blocks = stack
    with temporary_settings({PREFECT_API_URL: prefect.api_url}):
        first = onboard(TOGETHER, "Twice Started", blocks)
        second = onboard("{" + TOGETHER.upper() + "}", "Twice Started", blocks)
        prefect.start_worker(worker_env(sandbox, SCALE))  # both are picked up in the same poll
        final = wait_until_final([first, second], timeout_s=420)

        assert final[first] == "Completed", states(first)
        assert final[second] == "Failed" and "is already being onboarded by run" in _refusal(second), _refusal(second)
    assert one_of_each(sandbox, TOGETHER) == {"guests": 1, "role_assignments": 1, "partners": 1, "devices": 1}


@pytest.mark.timeout(600)
def test_a_new_run_while_the_tenants_run_is_crashed_is_refused_and_the_crashed_run_is_restarted(
    stack: tuple[PrefectStack, BlockNames], sandbox: SandboxHandle
) -> None:
    prefect, blocks = stack
    sandbox.add_fault(service="graph", kind="slow", method="POST", path_contains="invitations", tenant_id=CRASHED, count=1, delay="10s")
    with temporary_settings({PREFECT_API_URL: prefect.api_url}), get_client(sync_client=True) as client:
        worker = prefect.start_worker(worker_env(sandbox, SCALE))
        old = onboard(CRASHED, "Crashed Before", blocks)
        deadline = time.monotonic() + 240
        while not sandbox.request_log(service="graph", method="POST", tenant=CRASHED, path_contains="invitations"):
            assert time.monotonic() < deadline, states(old)
            time.sleep(0.5)
        prefect.kill_worker(worker)  # the run's process dies in the middle of the invitation
        # What the heartbeat automation does a few heartbeats later, at once here.
        client.set_flow_run_state(old, Crashed(message="no heartbeat (test)"), force=True)
        new = onboard(CRASHED, "Crashed Before", blocks)
        prefect.start_worker(worker_env(sandbox, SCALE))
        final = wait_until_final([old, new], timeout_s=420)

        assert final[new] == "Failed" and "which Crashed and is restarted by crash recovery" in _refusal(new), _refusal(new)
        history = states(old)
        assert final[old] == "Completed" and "AwaitingRecovery" in history, history
    assert one_of_each(sandbox, CRASHED) == {"guests": 1, "role_assignments": 1, "partners": 1, "devices": 1}
    invitations = sandbox.request_log(service="graph", method="POST", tenant=CRASHED, path_contains="invitations")
    assert len(invitations) == 1, "the restarted run invited the guest again instead of finding the one already created"
