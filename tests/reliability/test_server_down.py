"""The Prefect server down past the heartbeat limit while a run is Running: one execution, one of each object.

A real server with the project deployed, a process worker and the sandbox. The run waits in-process
for its customer's admin (a long pause between two checks) when the server goes down for longer
than the heartbeat automation allows a run to be silent. When it is back, the automation marks the
live run Crashed (or the test does, when a fresh heartbeat came first), as it must for a run whose
machine was lost; crash recovery then hears the run's heartbeats and puts it back to Running
instead of restarting it. The run finishes in its one process, with one of each object.

Down for 15 minutes (``M365_ONBOARD_TEST_SERVER_DOWN_S=900``) the Prefect worker itself gives up
first and its run's process ends with it: the worker is started again (its supervisor's job), crash
recovery restarts the run once, and it finishes from its cache with one of each object.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Crashed

from core.dispatch import sync_result
from core.requests import BlockNames
from tests.deployed import HEARTBEAT_S, ORG, accept_consent, deployed_stack, onboard, one_of_each, running_sandbox, states, wait_until_final, worker_env
from tests.prefect_harness import PrefectStack
from tests.sandbox_harness import SandboxHandle
from tests.support import keep_figures

pytestmark = pytest.mark.slow  # a Prefect server, a worker and the sandbox

SCALE = 3600
TENANT = "8b8b8b8b-0000-4000-8000-000000000001"
# Longer than the 3 missed heartbeats (90 s) after which a run is marked Crashed. The issue asks for 15 minutes
# (M365_ONBOARD_TEST_SERVER_DOWN_S=900, the documented longer run): see the module's docstring.
DOWN_S = max(4 * HEARTBEAT_S + 10, int(os.environ.get("M365_ONBOARD_TEST_SERVER_DOWN_S", "130")))
SCENARIO: dict[str, Any] = {
    "replication_lag": "20s",
    "workbench": {"organizations": [{"id": ORG, "name": "Outage Customers"}], "api_keys": [{"name": "onboarding", "organization": ORG, "generate": True}]},
    "tenants": [{"id": TENANT, "display_name": "Server Outage", "initial_domain": "outage.onmicrosoft.com", "consent": {"given": "never"},
                 "audit": {"enabled": True}, "device": {"first_alert_delay": "2h"}}],
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    with running_sandbox(tmp_path_factory.mktemp("outage-sandbox"), SCENARIO, SCALE) as handle:
        yield handle


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sandbox: SandboxHandle) -> Iterator[tuple[PrefectStack, BlockNames]]:
    with deployed_stack(tmp_path_factory.mktemp("prefect"), sandbox) as deployed:
        yield deployed
        deployed[0].stop_workers()


@pytest.mark.timeout(DOWN_S + 1200)
def test_a_run_through_the_server_down_past_the_heartbeat_limit_has_one_execution_and_one_of_each_object(
    stack: tuple[PrefectStack, BlockNames], sandbox: SandboxHandle
) -> None:
    prefect, blocks = stack
    pause_s = DOWN_S + 6 * HEARTBEAT_S  # the run sleeps through the outage and crash recovery's listening, between two consent checks
    env = worker_env(sandbox, SCALE, {
        "M365_ONBOARD_WAITS__SUSPEND_FROM_S": str(10_000 * 3600),  # every pause is in-process: the process stays
        "M365_ONBOARD_WAITS__ADMIN_CONSENT__INTERVAL_S": str(pause_s * SCALE),
        "M365_ONBOARD_WAITS__ADMIN_CONSENT__LIMIT_S": str((pause_s + 900) * SCALE),  # the limit is not what ends this wait
    })
    with temporary_settings({PREFECT_API_URL: prefect.api_url}):
        worker = prefect.start_worker(env)
        run_id = onboard(TENANT, "Server Outage", blocks)
        deadline = time.monotonic() + 180
        while not [r for r in sandbox.request_log(service="login") if r["tenant_id"] == TENANT and r["status"] >= 400]:
            assert time.monotonic() < deadline, states(run_id)
            time.sleep(1)
        time.sleep(5)  # in its pause now
        prefect.stop_server()
        time.sleep(DOWN_S)
        prefect.start_server()
        worker_gave_up = worker.poll() is not None
        restored: list[str] = []
        if worker_gave_up:
            # A Prefect process worker gives up after its API failed four rounds of backoff (about
            # 14 minutes, critical_service_loop) and its runs' processes end with it. Its supervisor
            # (systemd, Kubernetes) starts it again, as this does; crash recovery, left to the
            # automations as in production, restarts the run once, and it finishes from its cache.
            prefect.start_worker(env)
        else:
            # The heartbeat automation marks it Crashed, and crash recovery is handed it, unless a fresh
            # heartbeat reaches the server first; both are done here at once, so the test never depends on that race.
            with get_client(sync_client=True) as client:
                if "Crashed" not in states(run_id):
                    client.set_flow_run_state(run_id, Crashed(message=f"No heartbeat for {3 * HEARTBEAT_S} s (the server was down)"), force=True)
            recovery = sync_result(run_deployment("resume-onboarding/resume-onboarding", parameters={"flow_run_id": str(run_id)}, timeout=0))
            assert wait_until_final([recovery.id], timeout_s=240)[recovery.id] == "Completed", states(recovery.id)
            restored = states(run_id)
        accept_consent(sandbox, f"{sandbox.base_url('login')}/{TENANT}/adminconsent?client_id={sandbox.client_id}")
        final = wait_until_final([run_id], timeout_s=600)
        history = states(run_id)  # read while the test's server is the API

    worker_log = "\n".join(p.read_text() for p in prefect.log_dir.glob("worker-*.log"))
    submissions = len(re.findall(rf"submitting flow run '{run_id}'", worker_log))
    keep_figures("server_down", {"server_down_s": DOWN_S, "worker_gave_up": worker_gave_up, "submissions_of_the_run": submissions,
                                 "restarts": history.count("AwaitingRecovery"), "final": final[run_id]})
    assert final[run_id] == "Completed", history
    if worker_gave_up:
        assert history.count("AwaitingRecovery") == 1 and submissions == 2, (history, submissions)  # restarted once
    else:
        assert restored[-1] == "Running" and "Crashed" in restored, restored  # put back, not restarted
        assert "AwaitingRecovery" not in history, history
        assert submissions == 1, "the run got a second process"
        assert "was marked Crashed but its process lives" in worker_log
    assert one_of_each(sandbox, TENANT) == {"guests": 1, "role_assignments": 1, "partners": 1, "devices": 1}
