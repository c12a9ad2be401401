"""Cache policies that make a re-executed flow run skip what it already did.

A suspended run re-executes from the top when it resumes; each finished task must come back from
its persisted result. The key is the step's identity + its inputs + the flow run: steps never share
entries (a key without identity would), runs never do, and editing a task's code does not
invalidate them (Prefect's default key includes the source). Checked on Prefect 3.9.1
(reference: Prefect notes, experiment E14).
"""

from __future__ import annotations

from typing import Any

import httpx
from prefect.cache_policies import INPUTS, RUN_ID, CachePolicy
from prefect.client.schemas.objects import State
from prefect.exceptions import PrefectHTTPStatusError

STEP_ID = CachePolicy.from_cache_key_fn(lambda ctx, _: f"{ctx.task.fn.__module__}.{ctx.task.fn.__qualname__}")
ONCE_PER_RUN = STEP_ID + INPUTS + RUN_ID

# For tasks that only talk to the Prefect API (artifacts, events, scheduling a resumer run). A busy
# SQLite server answers 503 "database is locked" for a moment (PrefectHQ/prefect#19771); these tasks
# are idempotent, so a few spaced retries ride it out instead of failing a days-long run.
def _prefect_api_unavailable(task: object, task_run: object, state: State) -> bool:
    error = state.result(raise_on_failure=False)
    if isinstance(error, PrefectHTTPStatusError):
        return error.response.status_code in (429, 500, 502, 503, 504)
    return isinstance(error, httpx.TransportError | TimeoutError)


ORCHESTRATION_RETRIES: dict[str, Any] = {
    "retries": 4,
    "retry_delay_seconds": [2, 5, 15, 30],
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": _prefect_api_unavailable,
    "timeout_seconds": 300,  # a Prefect API call that hangs (a server half-down) is retried, not waited on for ever
}
