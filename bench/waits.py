"""What N tenants cost while they wait: processes, memory, CPU per check, wall time, API calls.

    uv run python -m bench.waits --tenants 20

Starts a real Prefect server (SQLite in a temporary folder, or the empty PostgreSQL database given
with ``--database-url postgresql+asyncpg://…``), deploys prefect.yaml, runs one process worker and the sandbox
on compressed time, then:
  1. onboards one tenant whose sandbox delays are all zero and times it (``onboarding_wall_s``);
  2. starts N onboardings whose first alerts are far away and waits until every run is Suspended
     in the alert window; then counts the processes in the worker's tree beyond the worker itself
     (``processes_while_waiting``) and the resident memory of the worker and server trees;
  3. ``cpu_s_per_check``: brings the scheduled resumer run of up to 10 of those runs forward to now;
     each pre-checks its tenant read-only, finds no alert yet, schedules its successor and leaves
     the run asleep. CPU seconds of the processes the worker ran for them (its reaped-children
     CPU) divided by the number of checks. ``cpu_s_per_wake``: the same for a check that wakes the
     run (a resumer run without pre-check, then the onboarding run re-executing from its cache and
     suspending again), which a wait pays once when its condition holds or its stall time comes;
  4. ``api_calls_per_tenant``: requests the sandbox served per tenant in step 2 (a whole onboarding
     up to the alert window).
The work pool gets a concurrency limit (``--concurrency``) so that N onboardings starting at once
queue instead of starting N processes; suspended runs do not count against it.
Prints one JSON object. Loopback only; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Scheduled
from pydantic import SecretStr

from automations.apply import apply_automations
from blocks.credentials import ProviderAppCredentials, WorkbenchCredentials
from core.dispatch import sync_result
from core.settings import OnboardingSettings
from core.tags import WAIT_CHECK_TAG, tenant_tag
from m365_onboarding.local_stack import stop_on_terminate, uninterrupted
from tests.prefect_harness import POOL, PrefectStack, process_tree, start_prefect
from tests.sandbox_harness import SandboxHandle, sandbox_settings, start_sandbox

ORG = "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d"
SCALE = 3600
CLK = os.sysconf("SC_CLK_TCK")


def _tenant(i: int, zero: bool) -> dict[str, Any]:
    # Healthy and data flowing at once, so each run goes straight to the alert window (the wait this
    # measures); only the first alerts are far away (100000 h is 28 h at 3600x: beyond any benchmark;
    # 1000 h was 17 minutes, and at N=200 the first tenants' alerts came before the last run suspended).
    device = {"health_check_delay": 0, "first_data_delay": 0, "first_alert_delay": 0 if zero else "100000h"}
    return {"id": str(uuid.UUID(int=0xB0000000_0000_4000_8000_000000000000 + i)), "display_name": f"Bench {i}",
            "initial_domain": f"bench{i}.onmicrosoft.com", "audit": {"enabled": True}, "device": device}


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _children_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / CLK  # cutime + cstime


def _worker_env(sandbox: SandboxHandle) -> dict[str, str]:
    env = {f"M365_ONBOARD_{k.upper()}": str(v) for k, v in sandbox_settings(sandbox).model_dump(exclude_none=True).items()
           if isinstance(v, str | int | float | Path)}
    week = 7 * 24 * 3600
    return env | {
        "M365_ONBOARD_WAITS__TIME_SCALE": str(SCALE),
        "M365_ONBOARD_WAITS__SUSPEND_FROM_S": "0",
        "M365_ONBOARD_TIMING__CONSISTENCY_INTERVAL_S": "0.1",
        "M365_ONBOARD_WAITS__FIRST_ALERTS__EXPECTED_S": str(72 * 3600),
        "M365_ONBOARD_WAITS__FIRST_ALERTS__STALL_S": str(400 * week),
        "M365_ONBOARD_WAITS__FIRST_ALERTS__LIMIT_S": str(800 * week),
        # 200 weeks = 9.3 h here: no scheduled check comes due during the benchmark (20 weeks, 56 min,
        # did at N=200); step 3 brings them forward.
        "M365_ONBOARD_WAITS__FIRST_ALERTS__INTERVAL_S": str(200 * week),
    }


def _start(tenant: dict[str, Any], blocks: dict[str, str]) -> uuid.UUID:
    request = {"tenant_id": tenant["id"], "organization_name": tenant["display_name"], "provider_org_id": ORG,
               "customer_contact_email": "admin@customer.example", "blocks": blocks}
    for attempt in range(6):  # a burst of creations meets SQLite's "database is locked" (503) now and then
        try:
            run = sync_result(run_deployment("onboard-tenant/onboard-tenant", parameters={"request": request}, timeout=0,
                                             tags=[tenant_tag(tenant["id"])]))  # as `onboard` starts them: `status` lists them at once
            return run.id
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 503 or attempt == 5:
                raise
            time.sleep(2 * (attempt + 1))
    raise AssertionError("unreachable")


def _scheduled_resumer(client: Any, run_id: uuid.UUID) -> uuid.UUID:
    # A scheduled run gets its templated name ("resume-<id>") only when it starts: match the parameter.
    offset = 0
    while True:
        page = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[WAIT_CHECK_TAG]), state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
            limit=200, offset=offset)
        for run in page:
            if run.parameters.get("flow_run_id") == str(run_id):
                return run.id
        if len(page) < 200:
            raise RuntimeError(f"no scheduled resumer run for {run_id}")
        offset += 200


def _finished(client: Any, run_id: uuid.UUID) -> bool:
    state = client.read_flow_run(run_id).state
    if state is not None and state.is_final() and state.name != "Completed":
        raise RuntimeError(f"a resumer run ended {state.name}: {state.message}")
    return state is not None and state.name == "Completed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=20, help="tenants in flight at once (default 20)")
    parser.add_argument("--concurrency", type=int, default=4, help="work pool concurrency limit (default 4)")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    parser.add_argument("--database-url", default=None, metavar="URL",
                        help="the server's database, an empty PostgreSQL one (postgresql+asyncpg://user:password@host/db); "
                             "default SQLite in a temporary folder")
    args = parser.parse_args(argv)
    for option, value in (("--tenants", args.tenants), ("--concurrency", args.concurrency)):
        if value < 1:
            parser.error(f"{option} must be at least 1, got {value}")
    if args.database_url is not None and not args.database_url.startswith("postgresql+asyncpg://"):
        parser.error("--database-url: expected postgresql+asyncpg://user:password@host/database")
    server_env = {} if args.database_url is None else {"PREFECT_SERVER_DATABASE_CONNECTION_URL": args.database_url}
    stop_on_terminate()  # `kill`: the finally below stops the server, worker and sandbox too
    tmp = Path(tempfile.mkdtemp(prefix="bench-waits-"))
    tenants = [_tenant(i, zero=False) for i in range(args.tenants)]
    zero = _tenant(args.tenants, zero=True)
    scenario = {"replication_lag": "5s", "workbench": {"organizations": [{"id": ORG, "name": "Bench"}],
                "api_keys": [{"name": "onboarding", "organization": ORG, "generate": True}]}, "tenants": [*tenants, zero]}
    stack: PrefectStack | None = None
    (tmp / "sandbox").mkdir()
    sandbox = start_sandbox(tmp / "sandbox", scenario, time_scale=SCALE)
    deadline = time.monotonic() + args.timeout

    def until(condition: Callable[[], bool], what: str, every: float = 1.0) -> None:
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting for {what}")
            time.sleep(every)

    try:
        stack = start_prefect(tmp / "prefect", server_env=server_env)
        stack.cli("work-pool", "create", POOL, "--type", "process")
        stack.cli("work-pool", "set-concurrency-limit", POOL, str(args.concurrency))
        stack.cli("deploy", "--all", "--no-prompt")
        with temporary_settings({PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
            ProviderAppCredentials(client_id=sandbox.client_id, client_secret=SecretStr(sandbox.app_secret())).save("bench-app")
            WorkbenchCredentials(api_key=SecretStr(sandbox.workbench_key())).save("bench-wb")
            blocks = {"provider_app": "bench-app", "workbench": "bench-wb"}
            # As in production: a run the worker fails to start (SQLite's 503 under this burst) is
            # reported Crashed, and the crash-recovery automation restarts it.
            apply_automations(client, OnboardingSettings(_env_file=None))
            worker = stack.start_worker(_worker_env(sandbox))

            def executions(run_ids: list[uuid.UUID]) -> int:
                return sum(sum(1 for s in client.read_flow_run_states(r) if s.name == "Running") for r in run_ids)

            def states_of(run_ids: list[uuid.UUID]) -> list[Any]:
                # One request per 200 runs, not one per run: at N=200 a per-run poll is itself a load on the server.
                found: dict[uuid.UUID, Any] = {}
                for i in range(0, len(run_ids), 200):
                    chunk = run_ids[i:i + 200]
                    found |= {r.id: r.state for r in client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=200)}
                return [found.get(r) for r in run_ids]

            def all_suspended(run_ids: list[uuid.UUID]) -> bool:
                states = states_of(run_ids)
                if any(s is not None and s.is_final() and s.name != "Crashed" for s in states):  # Crashed: being restarted
                    raise RuntimeError(f"a run ended before the alert window: {sorted({s.name for s in states if s})}")
                return all(s is not None and s.name == "Suspended" for s in states) and len(process_tree(worker.pid)) == 1

            started = time.monotonic()
            zero_run = _start(zero, blocks)
            until(lambda: (st := client.read_flow_run(zero_run).state) is not None and st.is_final(), "the zero-delay onboarding", 0.5)
            state = client.read_flow_run(zero_run).state
            if state is None or state.name != "Completed":
                raise RuntimeError(f"the zero-delay onboarding ended {state and state.name}: {state and state.message}")
            wall = time.monotonic() - started

            served = sandbox.request_log()
            seq_before = served[-1]["seq"] if served else 0
            runs = [_start(t, blocks) for t in tenants]
            until(lambda: all_suspended(runs), "every run to suspend in the alert window", 2.0 + len(runs) / 25)
            time.sleep(2)
            waiting_tree = process_tree(worker.pid)
            waiting_rss = _rss_mb(waiting_tree) + _rss_mb(process_tree(stack.server.pid))
            calls = len(sandbox.request_log(since=seq_before))

            sample = runs[:10]
            before_cpu, before_runs = _children_cpu_s(worker.pid), executions(sample)
            resumers = [_scheduled_resumer(client, run_id) for run_id in sample]
            for resumer in resumers:  # due now: exactly what happens when its scheduled time comes
                client.set_flow_run_state(resumer, Scheduled(scheduled_time=datetime.now(UTC)), force=True)
            until(lambda: all(_finished(client, r) for r in resumers) and all_suspended(sample), "the pre-checks", 1.0)
            if executions(sample) != before_runs:
                raise RuntimeError("a pre-check woke a run although no alert had come")
            checks, cpu = len(resumers), _children_cpu_s(worker.pid) - before_cpu

            before_cpu, before_runs = _children_cpu_s(worker.pid), executions(sample)
            for run_id in sample:  # a wake: resume unconditionally, as when the stall time has come
                run_deployment("resume-onboarding/resume-onboarding", parameters={"flow_run_id": str(run_id)}, timeout=0)
            until(lambda: executions(sample) >= before_runs + len(sample) and all_suspended(sample), "the triggered wakes", 1.0)
            wakes, wake_cpu = executions(sample) - before_runs, _children_cpu_s(worker.pid) - before_cpu
            result = {
                "tenants": args.tenants,
                "processes_while_waiting": len(waiting_tree) - 1,
                "rss_mb_while_waiting": round(waiting_rss, 1),
                "cpu_s_per_check": round(cpu / checks, 2),
                "cpu_s_per_wake": round(wake_cpu / wakes, 2),
                "onboarding_wall_s": round(wall, 1),
                "api_calls_per_tenant": round(calls / args.tenants, 1),
                "checks_measured": checks,
                "runs_restarted_after_crash": sum(1 for r in runs for st in client.read_flow_run_states(r) if st.name == "AwaitingRecovery"),
                "pool_concurrency": args.concurrency,
                "database": "sqlite" if args.database_url is None else "postgresql",
            }
        print(json.dumps(result))
        return 0
    finally:
        with uninterrupted():
            if stack is not None:
                stack.stop()
            sandbox.stop()


if __name__ == "__main__":
    sys.exit(main())
