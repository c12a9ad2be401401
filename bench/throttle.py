"""A CSV of N tenants onboarded at once against a per-app Graph limit: the 429s with and without the call budget.

    uv run python -m bench.throttle --tenants 200 [--budget off] [--graph-limit 60/10]

Starts a real Prefect server (SQLite, or the empty PostgreSQL database of ``--database-url``),
deploys prefect.yaml, runs one process worker (the pool runs ``--concurrency`` at once) and the
sandbox on compressed time, whose tenants are consented and audited and whose devices are healthy,
with data and alerts at once: every run goes straight through. The sandbox enforces Graph's
per-app limit across tenants, scaled down from Microsoft's 130,000 per 10 s to ``--graph-limit``
so that one 2-core machine can reach it (every other limit at its published figure). The budget
is sized to the same figure, as a provider sizes it to Microsoft's. Then ``m365-onboard onboard
--csv`` starts all N, and the benchmark waits until every run has ended.

Prints one JSON object: runs completed, wall time from the CSV to the last run's end, the 429s the
sandbox answered (by the per-app limit, and all), requests per tenant, the most Graph requests served
in any window of the limit, requests sent before their Retry-After, and the CPU of the worker's
runs and of the server (the budget's cost: one server request per call). Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter
from prefect.client.schemas.sorting import FlowRunSort

from bench.common import (
    BLOCKS,
    ORG,
    bench_arguments,
    bench_sandbox,
    bench_scenario,
    bench_tenant,
    children_cpu_s,
    deployed,
    server_env_of,
    set_up_figures,
    tree_cpu_s,
)
from m365_onboarding.local_stack import stop_on_terminate
from sandbox.core.rate_limits import PUBLISHED_LIMITS
from tests.prefect_harness import PROJECT, process_tree
from tests.sandbox_harness import SandboxHandle, sandbox_env, sent_before_retry_after

SCALE = 3600
LIMIT_NAME = "graph per app (scaled)"


def _limit(text: str) -> tuple[int, float]:
    try:
        requests, per_s = text.split("/")
        parsed = int(requests), float(per_s)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected REQUESTS/SECONDS, e.g. 60/10; got {text!r}") from exc
    if parsed[0] < 1 or not parsed[1] > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of requests per a positive number of seconds; got {text!r}")
    return parsed


def _scenario(tenants: list[dict[str, Any]], limit: tuple[int, float]) -> dict[str, Any]:
    published = [spec.model_dump() for spec in PUBLISHED_LIMITS if not (spec.service == "graph" and spec.per == "app")]
    scaled = {"service": "graph", "per": "app", "requests": limit[0], "per_s": limit[1], "name": LIMIT_NAME}
    return bench_scenario(tenants, rate_limits=[*published, scaled])


def _worker_env(sandbox: SandboxHandle, budget: bool, limit: tuple[int, float]) -> dict[str, str]:
    env = sandbox_env(sandbox) | {
        "M365_ONBOARD_WAITS__TIME_SCALE": str(SCALE),
        "M365_ONBOARD_TIMING__CONSISTENCY_INTERVAL_S": "0.1",
    }
    if not budget:
        return env | {"M365_ONBOARD_BUDGET__ENABLED": "false"}
    return env | {"M365_ONBOARD_BUDGET__GRAPH_PER_APP": json.dumps({"requests": limit[0], "per_s": limit[1]})}


def _write_csv(path: Path, tenants: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["tenant_id", "organization_name", "provider_org_id", "customer_contact_email", "provider_app_block", "workbench_block"])
        for tenant in tenants:
            writer.writerow([tenant["id"], tenant["display_name"], ORG, "admin@customer.example", BLOCKS["provider_app"], BLOCKS["workbench"]])


def _most_in_window(log: list[dict[str, Any]], window_s: float) -> int:
    times = sorted(datetime.fromisoformat(e["received_at"]).timestamp() for e in log)
    return max((bisect.bisect_left(times, t + window_s) - i for i, t in enumerate(times)), default=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench_arguments(parser, tenants=20, concurrency=8)
    parser.add_argument("--budget", choices=("on", "off"), default="on", help="send the calls through the call budget (default on)")
    parser.add_argument("--graph-limit", type=_limit, default=(60, 10.0), metavar="REQUESTS/SECONDS",
                        help="the sandbox's Graph limit per app across tenants, and the budget's (default 60/10)")
    args = parser.parse_args(argv)
    server_env = server_env_of(parser, args)
    stop_on_terminate()  # `kill`: leaving the blocks below stops the server, worker and sandbox too
    tmp = Path(tempfile.mkdtemp(prefix="bench-throttle-"))
    device = {"health_check_delay": 0, "first_data_delay": 0, "first_alert_delay": 0}
    tenants = [bench_tenant(i, 0xC0000000_0000_4000_8000_000000000000, "Throttle", device) for i in range(args.tenants)]
    deadline = time.monotonic() + args.timeout
    with bench_sandbox(tmp, _scenario(tenants, args.graph_limit), SCALE) as sandbox:
        with deployed(tmp, sandbox, args.concurrency, server_env) as (stack, client):
            env = _worker_env(sandbox, args.budget == "on", args.graph_limit)
            worker = stack.start_worker(env)
            _write_csv(tmp / "tenants.csv", tenants)
            server_cpu_before = tree_cpu_s(stack.server.pid, process_tree(stack.server.pid))
            started = time.monotonic()
            onboard = subprocess.run([sys.executable, "-m", "m365_onboarding.cli", "onboard", "--csv", str(tmp / "tenants.csv")],
                                     cwd=PROJECT, env=stack.env(env), capture_output=True, text=True, timeout=1800)
            if onboard.returncode != 0:
                raise RuntimeError(f"m365-onboard onboard --csv failed ({onboard.returncode}):\n{onboard.stdout[-2000:]}\n{onboard.stderr[-2000:]}")
            onboarding = DeploymentFilter(name=DeploymentFilterName(any_=["onboard-tenant"]))

            def final_states() -> dict[str, int]:
                counts: dict[str, int] = {}
                offset = 0
                while True:
                    page = client.read_flow_runs(deployment_filter=onboarding, flow_run_filter=FlowRunFilter(), sort=FlowRunSort.ID_DESC,
                                                 limit=200, offset=offset)
                    for run in page:
                        name = (run.state.name if run.state is not None else None) or "none"
                        counts[name] = counts.get(name, 0) + 1
                    if len(page) < 200:
                        return counts
                    offset += 200

            while True:
                counts = final_states()
                if counts.get("Completed", 0) + counts.get("Failed", 0) + counts.get("Cancelled", 0) >= args.tenants:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gave up waiting for every run to end: {counts}")
                time.sleep(5)
            wall = time.monotonic() - started
            time.sleep(2)
            worker_cpu = children_cpu_s(worker.pid)
            server_cpu = tree_cpu_s(stack.server.pid, process_tree(stack.server.pid)) - server_cpu_before
        log = sandbox.request_log()
        graph_served = [e for e in log if e["service"] == "graph" and e["status"] != 429]
        result = {
            "tenants": args.tenants,
            "budget": args.budget,
            "graph_limit": f"{args.graph_limit[0]}/{args.graph_limit[1]:g}s",
            "runs": counts,
            "wall_s": round(wall, 1),
            "http_429_by_the_limit": sum(1 for e in log if e["status"] == 429 and (e["fault"] or "") == f"rate-limit:{LIMIT_NAME}"),
            "http_429_all": sum(1 for e in log if e["status"] == 429),
            "requests_per_tenant": round(len(log) / args.tenants, 1),
            "most_graph_requests_in_a_window": _most_in_window(graph_served, args.graph_limit[1]),
            "sent_before_retry_after": len(sent_before_retry_after([e for e in log if e["service"] != "login"],
                                                                   key=("service", "tenant_id", "app_id", "client_request_id"))),
            "worker_cpu_s_per_tenant": round(worker_cpu / args.tenants, 2),
            "server_cpu_s_per_tenant": round(server_cpu / args.tenants, 2),
            **set_up_figures(args),
        }
        print(json.dumps(result))
        return 0


if __name__ == "__main__":
    sys.exit(main())
