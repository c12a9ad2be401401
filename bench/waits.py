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
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.exceptions import PrefectHTTPStatusError
from prefect.states import Scheduled

from bench.common import (
    BLOCKS,
    ORG,
    bench_arguments,
    bench_sandbox,
    bench_scenario,
    bench_tenant,
    children_cpu_s,
    deployed,
    rss_mb,
    server_env_of,
    set_up_figures,
    states_of,
)
from core.dispatch import sync_result
from core.tags import WAIT_CHECK_TAG, tenant_tag
from m365_onboarding.local_stack import stop_on_terminate
from tests.prefect_harness import process_tree
from tests.sandbox_harness import SandboxHandle, sandbox_env

SCALE = 3600


def _tenant(i: int, zero: bool) -> dict[str, Any]:
    # Healthy and data flowing at once, so each run goes straight to the alert window (the wait this
    # measures); only the first alerts are far away (100000 h is 28 h at 3600x: beyond any benchmark;
    # 1000 h was 17 minutes, and at N=200 the first tenants' alerts came before the last run suspended).
    device = {"health_check_delay": 0, "first_data_delay": 0, "first_alert_delay": 0 if zero else "100000h"}
    return bench_tenant(i, 0xB0000000_0000_4000_8000_000000000000, "Bench", device)


def _worker_env(sandbox: SandboxHandle) -> dict[str, str]:
    week = 7 * 24 * 3600
    return sandbox_env(sandbox) | {
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
    bench_arguments(parser, tenants=20, concurrency=4)
    args = parser.parse_args(argv)
    server_env = server_env_of(parser, args)
    stop_on_terminate()  # `kill`: leaving the blocks below stops the server, worker and sandbox too
    tmp = Path(tempfile.mkdtemp(prefix="bench-waits-"))
    tenants = [_tenant(i, zero=False) for i in range(args.tenants)]
    zero = _tenant(args.tenants, zero=True)
    scenario = bench_scenario([*tenants, zero])
    deadline = time.monotonic() + args.timeout

    def until(condition: Callable[[], bool], what: str, every: float = 1.0) -> None:
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting for {what}")
            time.sleep(every)

    with bench_sandbox(tmp, scenario, SCALE) as sandbox:
        with deployed(tmp, sandbox, args.concurrency, server_env) as (stack, client):
            blocks = BLOCKS
            worker = stack.start_worker(_worker_env(sandbox))

            def executions(run_ids: list[uuid.UUID]) -> int:
                return sum(sum(1 for s in client.read_flow_run_states(r) if s.name == "Running") for r in run_ids)

            def all_suspended(run_ids: list[uuid.UUID]) -> bool:
                states = states_of(client, run_ids)
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
            waiting_rss = rss_mb(waiting_tree) + rss_mb(process_tree(stack.server.pid))
            calls = len(sandbox.request_log(since=seq_before))

            sample = runs[:10]
            before_cpu, before_runs = children_cpu_s(worker.pid), executions(sample)
            resumers = [_scheduled_resumer(client, run_id) for run_id in sample]
            for resumer in resumers:  # due now: exactly what happens when its scheduled time comes
                client.set_flow_run_state(resumer, Scheduled(scheduled_time=datetime.now(UTC)), force=True)
            until(lambda: all(_finished(client, r) for r in resumers) and all_suspended(sample), "the pre-checks", 1.0)
            if executions(sample) != before_runs:
                raise RuntimeError("a pre-check woke a run although no alert had come")
            checks, cpu = len(resumers), children_cpu_s(worker.pid) - before_cpu

            before_cpu, before_runs = children_cpu_s(worker.pid), executions(sample)
            for run_id in sample:  # a wake: resume unconditionally, as when the stall time has come
                run_deployment("resume-onboarding/resume-onboarding", parameters={"flow_run_id": str(run_id)}, timeout=0)
            until(lambda: executions(sample) >= before_runs + len(sample) and all_suspended(sample), "the triggered wakes", 1.0)
            wakes, wake_cpu = executions(sample) - before_runs, children_cpu_s(worker.pid) - before_cpu
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
                **set_up_figures(args),
            }
        print(json.dumps(result))
        return 0


if __name__ == "__main__":
    sys.exit(main())
