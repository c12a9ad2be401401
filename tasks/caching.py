"""Cache policies that make a re-executed flow run skip what it already did.

A suspended run re-executes from the top when it resumes; each finished task must come back from
its persisted result. The key is the step's identity + its inputs + the flow run: steps never share
entries (a key without identity would), runs never do, and editing a task's code does not
invalidate them (Prefect's default key includes the source). Checked on Prefect 3.9.1
(reference: Prefect notes, experiment E14).
"""

from __future__ import annotations

from prefect.cache_policies import INPUTS, RUN_ID, CachePolicy

STEP_ID = CachePolicy.from_cache_key_fn(lambda ctx, _: f"{ctx.task.fn.__module__}.{ctx.task.fn.__qualname__}")
ONCE_PER_RUN = STEP_ID + INPUTS + RUN_ID
