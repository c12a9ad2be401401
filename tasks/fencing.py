"""One execution per onboarding run: a process that is no longer its run's current execution writes nothing.

A run can get a second process while the first still lives: the heartbeat automation marks a run
Crashed when the Prefect server heard nothing from it for a while (the server was down, not the
process), and if crash recovery then restarts it, two processes run it. So each execution tags
the run with an id of its own when it starts (:func:`begin_execution`), replacing the previous
execution's, and before every write to a tenant (:func:`assert_current_execution`) reads the run
again: if a later execution's tag is there, or the run was cancelled, this process stops at once,
without proposing any state (that would overwrite the current execution's), and writes nothing.
A run marked Crashed whose process goes on is not stopped here: crash recovery finds it alive
(its heartbeats) and puts it back to Running instead of restarting it.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext
from prefect.exceptions import PrefectHTTPStatusError

from clients.errors import ApiConnectionError

logger = logging.getLogger("m365_onboarding.fencing")

EXECUTION_TAG_PREFIX = "execution-"
EXIT_SUPERSEDED = 75  # EX_TEMPFAIL: this process gave way to the run's current execution
STOPPED = (StateType.CANCELLED, StateType.CANCELLING, StateType.COMPLETED, StateType.FAILED)
_executions: dict[UUID, str] = {}  # flow run id -> the execution tag this process runs as
_lock = threading.Lock()


class ExecutionUnconfirmed(ApiConnectionError):
    """The Prefect API could not say whether this process is still its run's execution (retried; nothing written)."""


def _current_run_id() -> UUID | None:
    context = FlowRunContext.get()
    return context.flow_run.id if context is not None and context.flow_run is not None else None


def execution_tags(tags: list[str]) -> list[str]:
    return [t for t in tags if t.startswith(EXECUTION_TAG_PREFIX)]


def begin_execution() -> str | None:
    """Tag the current flow run with this execution's id, replacing an earlier execution's (None outside a flow run)."""
    run_id = _current_run_id()
    if run_id is None:
        return None
    tag = f"{EXECUTION_TAG_PREFIX}{uuid.uuid4().hex[:12]}"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        client.update_flow_run(run_id, tags=sorted({*(t for t in run.tags if t not in execution_tags(run.tags)), tag}))
    with _lock:
        _executions[run_id] = tag
    return tag


def assert_current_execution() -> None:
    """Before a write: go on only while this process is still its run's current execution."""
    run_id = _current_run_id()
    with _lock:
        mine = _executions.get(run_id) if run_id is not None else None
    if run_id is None or mine is None:
        return  # not an onboarding run's execution (a dry run, a test calling a step directly)
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
    except (httpx.HTTPError, PrefectHTTPStatusError) as exc:
        raise ExecutionUnconfirmed(f"flow run {run_id}: the Prefect API did not answer ({type(exc).__name__}); nothing is written until it does") from exc
    current = execution_tags(run.tags)
    state = run.state.type if run.state else None
    if current == [mine] and state not in STOPPED:
        return
    logger.error("flow_run=%s execution %s stops before a write: the run is %s, its execution now %s; this process writes nothing",
                 run_id, mine, state.value if state else "without a state", ", ".join(current) or "unknown")
    logging.shutdown()
    os._exit(EXIT_SUPERSEDED)  # no state proposed, no cleanup that could report for the run
