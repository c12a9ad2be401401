"""The call budget: many processes calling for many tenants stay within Microsoft's per-app limit.

The sandbox enforces Graph's per-app limit across tenants, scaled down (30 calls per 10 s instead
of 130,000) so that four processes on this machine can reach it. Each process calls Graph for its
own tenant as fast as it can, built the production way (blocks, settings, budget), against a real
Prefect server whose rate limits are the budget. Without the budget the sandbox answers 429s (each
process honours its own Retry-Afters, not the others'); with the budget sized to the same limit it answers none, and still serves most of what the
limit allows. The sandbox's request log is the witness: what it received, when, and what it answered.
"""

from __future__ import annotations

import bisect
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from core.requests import BlockNames
from tests.deployed import ORG, running_sandbox, save_blocks, worker_env
from tests.prefect_harness import PROJECT, PrefectStack, start_prefect
from tests.sandbox_harness import SandboxHandle

pytestmark = pytest.mark.slow  # a Prefect server and the sandbox

LIMIT, WINDOW_S = 30, 10.0
PROCESSES, SECONDS = 4, 15.0
TENANTS = [f"b0d9e700-0000-4000-8000-00000000000{i}" for i in range(1, PROCESSES + 1)]
SCENARIO: dict[str, Any] = {
    "workbench": {"organizations": [{"id": ORG, "name": "Budget Customers"}], "api_keys": [{"name": "onboarding", "organization": ORG, "generate": True}]},
    "tenants": [{"id": tenant, "display_name": "Budget", "initial_domain": f"budget{i}.onmicrosoft.com"} for i, tenant in enumerate(TENANTS)],
    "rate_limits": [{"service": "graph", "per": "app", "requests": LIMIT, "per_s": WINDOW_S, "name": "graph per app (scaled)"}],
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    with running_sandbox(tmp_path_factory.mktemp("budget-sandbox"), SCENARIO, 1) as handle:
        yield handle


@pytest.fixture(scope="module")
def prefect(tmp_path_factory: pytest.TempPathFactory, sandbox: SandboxHandle) -> Iterator[tuple[PrefectStack, BlockNames]]:
    stack = start_prefect(tmp_path_factory.mktemp("budget-prefect"))
    try:
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            blocks = save_blocks(sandbox)
        yield stack, blocks
    finally:
        stack.stop()


def _burst(sandbox: SandboxHandle, prefect: PrefectStack, blocks: BlockNames, settings: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
    """Every process calling for its tenant at once; the Graph requests the sandbox logged meanwhile, and the calls answered."""
    since = max((entry["seq"] for entry in sandbox.request_log()), default=0)
    env = prefect.env(worker_env(sandbox, 1, settings))
    callers = [subprocess.Popen([sys.executable, "-m", "tests.budget_caller", tenant, str(SECONDS), blocks.provider_app, blocks.workbench],
                                cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tenant in TENANTS]
    answered = 0
    for caller in callers:
        out, err = caller.communicate(timeout=SECONDS + 300)
        assert caller.returncode == 0, err[-3000:]
        answered += json.loads(out.strip().splitlines()[-1])["answered"]
    return [e for e in sandbox.request_log(service="graph", since=since) if e["path"] == "/v1.0/organization"], answered


def _limit_refusals(log: list[dict[str, Any]]) -> int:
    return sum(1 for e in log if e["status"] == 429 and (e["fault"] or "").startswith("rate-limit:"))


def _most_in_any_window(log: list[dict[str, Any]]) -> int:
    """The most requests the sandbox served (not refused) within any WINDOW_S seconds."""
    times = sorted(datetime.fromisoformat(e["received_at"]).timestamp() for e in log if e["status"] == 200)
    return max((bisect.bisect_left(times, t + WINDOW_S) - i for i, t in enumerate(times)), default=0)


def test_without_the_budget_the_processes_are_throttled(sandbox: SandboxHandle, prefect: tuple[PrefectStack, BlockNames]) -> None:
    stack, blocks = prefect
    log, answered = _burst(sandbox, stack, blocks, {"M365_ONBOARD_BUDGET__ENABLED": "false"})
    refused = _limit_refusals(log)
    # Each process honours its own Retry-Afters, but none knows of the others': they keep meeting the limit.
    assert refused >= PROCESSES, f"the scaled limit should be reached without a budget: {refused} 429s of {len(log)} requests"
    assert answered > 0


def test_with_the_budget_sized_to_the_limit_no_call_is_throttled(sandbox: SandboxHandle, prefect: tuple[PrefectStack, BlockNames]) -> None:
    stack, blocks = prefect
    budget = {"M365_ONBOARD_BUDGET__GRAPH_PER_APP": json.dumps({"requests": LIMIT, "per_s": WINDOW_S})}
    log, answered = _burst(sandbox, stack, blocks, budget)
    assert _limit_refusals(log) == 0, [e for e in log if e["status"] == 429][:5]
    assert _most_in_any_window(log) <= LIMIT
    # The budget queues calls rather than starving them: burst plus steady rate over the burst's
    # length would be about 5 + 2.2 x 15 calls; processes start a few seconds apart.
    assert answered >= 20, f"only {answered} calls answered in {SECONDS:g}s"
    assert answered == len(log)  # every call the processes made reached the sandbox once: none refused, none retried
