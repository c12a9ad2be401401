"""The call budget: many processes calling for many tenants stay within Microsoft's per-app limit.

The sandbox enforces Graph's per-app limit across tenants, scaled down (30 calls per 10 s instead
of 130,000) so that four processes on this machine can reach it. Each process calls Graph for its
own tenant as fast as it can, built the production way (blocks, settings, budget), against a real
Prefect server whose rate limits are the budget. Without the budget the sandbox answers 429s (each
process honours its own Retry-Afters, not the others'); with the budget sized to the same limit it answers none, and still serves most of what the
limit allows. And a 429 one process is given holds the tenant's calls in every other process until
its Retry-After. The sandbox's request log is the witness: what it received, when, and what it answered.
"""

from __future__ import annotations

import bisect
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from core.requests import BlockNames
from tests.deployed import ORG, running_sandbox, save_blocks, worker_env
from tests.prefect_harness import PROJECT, PrefectStack, start_prefect
from tests.sandbox_harness import SandboxHandle, sent_before_retry_after
from tests.support import keep_figures

pytestmark = pytest.mark.slow  # a Prefect server and the sandbox

LIMIT, WINDOW_S = 30, 10.0
PROCESSES, SECONDS = 4, 10.0
SIZED_TO_THE_LIMIT = {"M365_ONBOARD_BUDGET__GRAPH_PER_APP": json.dumps({"requests": LIMIT, "per_s": WINDOW_S})}  # as a provider sizes it to Microsoft's
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


def _caller(prefect: PrefectStack, blocks: BlockNames, env: dict[str, str], tenant: str, seconds: float,
            on_cue: bool = False) -> subprocess.Popen[str]:
    """``tests/budget_caller.py``: one process calling Graph for ``tenant`` for ``seconds``, built the production way."""
    args = [tenant, str(seconds), blocks.provider_app, blocks.workbench, *(["--on-cue"] if on_cue else [])]
    return subprocess.Popen([sys.executable, "-m", "tests.budget_caller", *args], cwd=PROJECT, env=prefect.env(env),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ready(caller: subprocess.Popen[str]) -> None:
    assert caller.stdout is not None and caller.stdout.readline().strip() == "ready", caller.stderr.read() if caller.stderr else ""


def _cue(caller: subprocess.Popen[str], at: float) -> None:
    assert caller.stdin is not None
    caller.stdin.write(f"{at}\n")
    caller.stdin.flush()


def _outcome(caller: subprocess.Popen[str], seconds: float) -> dict[str, Any]:
    out, err = caller.communicate(timeout=seconds + 300)
    assert caller.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _last_seq(sandbox: SandboxHandle) -> int:
    return max((entry["seq"] for entry in sandbox.request_log()), default=0)


def _burst(sandbox: SandboxHandle, prefect: PrefectStack, blocks: BlockNames, settings: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
    """Every process calling for its tenant at once; the Graph requests the sandbox logged meanwhile, and the calls answered."""
    since = _last_seq(sandbox)
    env = worker_env(sandbox, 1, settings)
    callers = [_caller(prefect, blocks, env, tenant, SECONDS, on_cue=True) for tenant in TENANTS]
    for caller in callers:
        _ready(caller)
    start_at = time.time() + 0.5
    for caller in callers:
        _cue(caller, start_at)  # all at once, whatever each took to start
    answered = sum(_outcome(caller, SECONDS)["answered"] for caller in callers)
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
    keep_figures("throttle_without_budget", {"processes": PROCESSES, "seconds": SECONDS, "limit": f"{LIMIT}/{WINDOW_S:g}s",
                                             "requests": len(log), "http_429": refused, "answered": answered})
    # Each process honours its own Retry-Afters, but none knows of the others': they keep meeting the limit.
    assert refused >= PROCESSES, f"the scaled limit should be reached without a budget: {refused} 429s of {len(log)} requests"
    assert answered > 0


def test_with_the_budget_sized_to_the_limit_no_call_is_throttled(sandbox: SandboxHandle, prefect: tuple[PrefectStack, BlockNames]) -> None:
    stack, blocks = prefect
    log, answered = _burst(sandbox, stack, blocks, SIZED_TO_THE_LIMIT)
    keep_figures("throttle_with_budget", {"processes": PROCESSES, "seconds": SECONDS, "limit": f"{LIMIT}/{WINDOW_S:g}s",
                                          "requests": len(log), "http_429": _limit_refusals(log), "answered": answered,
                                          "most_in_a_window": _most_in_any_window(log)})
    assert _limit_refusals(log) == 0, [e for e in log if e["status"] == 429][:5]
    assert _most_in_any_window(log) <= LIMIT
    # The budget queues calls rather than starving them: its burst plus its steady rate over the
    # burst's length is about 5 + 2.2 x 10 calls.
    assert answered >= 15, f"only {answered} calls answered in {SECONDS:g}s"
    assert answered == len(log)  # every call the processes made reached the sandbox once: none refused, none retried


HOLD_S = 10  # the Retry-After Graph gives the first process; the second asks for its first call 2 s later


def test_a_429_given_to_one_process_holds_the_tenants_calls_in_every_other_process_until_its_retry_after(
    sandbox: SandboxHandle, prefect: tuple[PrefectStack, BlockNames]
) -> None:
    stack, blocks = prefect
    tenant = TENANTS[0]
    env = worker_env(sandbox, 1, SIZED_TO_THE_LIMIT)
    since = _last_seq(sandbox)
    sandbox.add_fault(service="graph", kind="throttle", tenant_id=tenant, count=1, retry_after=f"{HOLD_S}s")
    first, second = _caller(stack, blocks, env, tenant, HOLD_S + 4, on_cue=True), _caller(stack, blocks, env, tenant, 3, on_cue=True)
    _ready(first)
    _ready(second)
    start_at = time.time() + 0.5
    _cue(first, start_at)
    _cue(second, start_at + 2)
    first_outcome, second_outcome = _outcome(first, HOLD_S + 4), _outcome(second, HOLD_S + 5)
    log = sandbox.request_log(service="graph", tenant=tenant, since=since)
    throttled = [e for e in log if e["status"] == 429]
    assert len(throttled) == 1 and throttled[0]["fault"].startswith("throttle#"), "the first process's first call meets the 429, and only it"
    retry_at = datetime.fromisoformat(throttled[0]["received_at"]).timestamp() + HOLD_S
    assert second_outcome["started_at"] < retry_at - 5, "the second process asked for its first call well within the Retry-After"
    # Any request of this app and tenant, from either process: none before the Retry-After passed.
    assert sent_before_retry_after(log, key=("service", "tenant_id", "app_id")) == []
    assert first_outcome["answered"] > 0 and second_outcome["answered"] > 0
