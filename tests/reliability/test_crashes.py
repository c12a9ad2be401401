"""SIGKILL at seeded random points across the whole flow, and a run resumed on a second host.

A real server with the project deployed, process workers and the sandbox. The worker (with every
process under it: the runs and the resumer checks) is killed again and again at moments drawn from
a seeded generator, while several tenants onboard; each time the runs it held are marked Crashed,
as the heartbeat automation does a few heartbeats later (at once here, to spend no minutes on
silence), and a new worker starts, with a home and a storage folder of its own: a second host.
Crash recovery restarts each run, which gets its finished steps back from the shared result
storage. Every tenant ends Completed with exactly one SOC guest, one Global Reader assignment, one
partner entry, one device, and one consent email for the tenant whose admin consents from it.
``M365_ONBOARD_TEST_KILLS`` sets the number of kills (30 by default; more for a longer run).
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Crashed

from core.requests import BlockNames
from core.tags import WAIT_CHECK_TAG
from tests.deployed import ORG, accept_consent, deployed_stack, onboard, one_of_each, running_sandbox, states, wait_until_final, worker_env
from tests.mail_relay import MailRelay
from tests.prefect_harness import PrefectStack
from tests.sandbox_harness import SandboxHandle
from tests.support import keep_figures

pytestmark = pytest.mark.slow  # a Prefect server, workers and the sandbox

SCALE = 3600
KILLS = int(os.environ.get("M365_ONBOARD_TEST_KILLS", "30"))
SEED = 14
EMAILED = "7a7a7a7a-0000-4000-8000-000000000003"  # its admin consents from the email
TENANTS: dict[str, dict[str, Any]] = {
    "7a7a7a7a-0000-4000-8000-000000000001": {"display_name": "Killed Fresh", "audit": {"enabled": False, "dehydrated": True, "activation_delay": "45m"}},
    "7a7a7a7a-0000-4000-8000-000000000002": {"display_name": "Killed Configured", "audit": {"enabled": True},
                                             "existing": {"guests": [{"email": f"{ORG}@soc.expel.io"}], "partners": [{}]}},
    EMAILED: {"display_name": "Killed Emailed", "consent": {"given": "never"}, "audit": {"enabled": True}},
    "7a7a7a7a-0000-4000-8000-000000000004": {"display_name": "Killed Plain", "audit": {"enabled": False, "activation_delay": "30m"}},
}
SCENARIO: dict[str, Any] = {
    "replication_lag": "20s",
    "workbench": {"organizations": [{"id": ORG, "name": "Crash Customers"}], "api_keys": [{"name": "onboarding", "organization": ORG, "generate": True}]},
    "tenants": [{"id": tenant, "initial_domain": f"killed{tenant[-1]}.onmicrosoft.com", "device": {"first_alert_delay": "120h"}, **spec}
                for tenant, spec in TENANTS.items()],
}
# Slow writes widen the moments a kill can land in the middle of one.
SLOW_WRITES = [{"service": service, "kind": "slow", "method": "POST", "delay": "1s", "probability": 0.5, "seed": SEED}
               for service in ("graph", "workbench", "management_activity")]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    with running_sandbox(tmp_path_factory.mktemp("crash-sandbox"), SCENARIO, SCALE) as handle:
        yield handle


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailRelay]:
    relay = MailRelay(tmp_path_factory.mktemp("relay"))
    relay.start()
    yield relay
    relay.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sandbox: SandboxHandle, relay: MailRelay) -> Iterator[tuple[PrefectStack, BlockNames, str]]:
    # A recovery run killed in its turn leaves its run Crashed: handed over again a minute later.
    with deployed_stack(tmp_path_factory.mktemp("prefect"), sandbox, restart_again_after_s=60) as (prefect, blocks):
        with temporary_settings({PREFECT_API_URL: prefect.api_url}):
            mail = relay.save_block(f"mail-{blocks.workbench}")
        yield prefect, blocks, mail
        prefect.stop_workers()


def _host_env(sandbox: SandboxHandle, relay: MailRelay, mail_block: str, host: Path) -> dict[str, str]:
    """A worker on a host of its own: its own Prefect home and local storage; only the result storage block is shared."""
    host.mkdir(parents=True, exist_ok=True)
    return worker_env(sandbox, SCALE, {
        "PREFECT_HOME": str(host / "prefect-home"),
        "PREFECT_LOCAL_STORAGE_PATH": str(host / "storage"),
        "M365_ONBOARD_WAITS__SUSPEND_FROM_S": str(3 * 3600),  # consent checks poll in-process; the alert wait suspends
        "M365_ONBOARD_RECOVERY__MAX_RECOVERIES": str(KILLS + 5),
        # The test killed those processes itself: crash recovery need not listen for their heartbeats
        # (tests/reliability/test_server_down.py shows that listening for a live one).
        "M365_ONBOARD_RECOVERY__LISTEN_BEFORE_RESTART_S": "0",
        "M365_ONBOARD_NOTIFICATIONS__CUSTOMER_BLOCK": mail_block,
        "M365_ONBOARD_NOTIFICATIONS__EMAIL_FROM": "onboarding@provider.example",
        "SSL_CERT_FILE": str(relay.ca_cert),
    })


def _running(client: Any) -> list[Any]:
    """The onboarding runs and their scheduled wait checks Running now.

    Crash recovery's own runs are not aimed at: one killed leaves its run Crashed until the
    automation that hands such runs over again comes round (a minute here).
    """
    running = client.read_flow_runs(flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))))
    return [r for r in running if r.name.startswith("onboard-") or WAIT_CHECK_TAG in r.tags]


def _all_final(client: Any, run_ids: list[Any]) -> bool:
    return all((state := client.read_flow_run(run_id).state) is not None and state.is_final() and state.name != "Crashed" for run_id in run_ids)


def _mark_dead_runs_crashed(client: Any) -> int:
    """What the heartbeat automation does once the killed onboarding runs fall silent: mark each Crashed.

    Killed wait checks are left to the automations (marked Crashed 3 heartbeats later, then rescheduled).
    """
    running = [r for r in _running(client) if r.name.startswith("onboard-")]
    for run in running:
        client.set_flow_run_state(run.id, Crashed(message="no heartbeat: the worker was killed (test)"), force=True)
    return len(running)


def _consent_from_the_email(sandbox: SandboxHandle, relay: MailRelay) -> bool:
    """As the emailed tenant's admin: accept through the link in the consent email, once it has come."""
    for mail in relay.mails():
        found = re.search(rf"https://\S+/{EMAILED}/adminconsent\?\S+", mail.get_content())
        if found:
            accept_consent(sandbox, found[0])
            return True
    return False


@pytest.mark.timeout(2400)
def test_every_tenant_is_onboarded_once_through_kills_at_random_points_and_restarts_on_other_hosts(
    stack: tuple[PrefectStack, BlockNames, str], sandbox: SandboxHandle, relay: MailRelay, tmp_path: Path
) -> None:
    prefect, blocks, mail_block = stack
    for fault in SLOW_WRITES:
        sandbox.add_fault(**fault)
    draw = random.Random(SEED)
    crashed_runs = 0
    consented = False
    with temporary_settings({PREFECT_API_URL: prefect.api_url}), get_client(sync_client=True) as client:
        worker = prefect.start_worker(_host_env(sandbox, relay, mail_block, tmp_path / "host-0"))
        runs = {tenant: onboard(tenant, spec["display_name"], blocks) for tenant, spec in TENANTS.items()}
        kills = 0
        while kills < KILLS and not _all_final(client, list(runs.values())):
            if not _running(client):  # a kill lands in the middle of something: a step, a wait check, a resumed run
                time.sleep(0.5)
                continue
            time.sleep(draw.uniform(0.2, 3.0))
            prefect.kill_worker(worker)
            kills += 1
            crashed_runs += _mark_dead_runs_crashed(client)
            consented = consented or _consent_from_the_email(sandbox, relay)
            worker = prefect.start_worker(_host_env(sandbox, relay, mail_block, tmp_path / f"host-{kills}"))
        deadline = time.monotonic() + 300
        while not consented:
            assert time.monotonic() < deadline, "no consent email came"
            consented = _consent_from_the_email(sandbox, relay)
            time.sleep(1)
        final = wait_until_final(list(runs.values()), timeout_s=900)
        histories = {tenant: states(run_id) for tenant, run_id in runs.items()}  # read while the test's server is the API

    keep_figures("crashes", {"kills": kills, "onboarding_runs_crashed_by_a_kill": crashed_runs, "tenants": len(TENANTS),
                             "completed": sum(1 for s in final.values() if s == "Completed"),
                             "runs_restarted": sum(1 for h in histories.values() if "AwaitingRecovery" in h)})
    assert kills == KILLS, f"every run finished after {kills} kills"
    assert set(final.values()) == {"Completed"}, {TENANTS[t]["display_name"]: h for t, h in histories.items()}
    for tenant in TENANTS:
        assert one_of_each(sandbox, tenant) == {"guests": 1, "role_assignments": 1, "partners": 1, "devices": 1}, TENANTS[tenant]["display_name"]
    assert [str(m["To"]) for m in relay.mails()] == ["admin@customer.example"], [m["Subject"] for m in relay.mails()]
    assert crashed_runs >= KILLS // 3, "the kills hardly ever met an onboarding run in the middle of a step"
    restarted = [t for t, h in histories.items() if "AwaitingRecovery" in h]
    assert restarted, "no run was restarted after a crash"
