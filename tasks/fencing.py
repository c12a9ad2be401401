"""One execution per onboarding run: a process that is no longer its run's current execution writes nothing.

A run can get a second process while the first still lives: the heartbeat automation marks a run
Crashed when the Prefect server heard nothing from it for a while (the server was down, not the
process), and crash recovery reschedules it. Prefect counts each time a run enters Running
(``run_count``), so each execution learns its number when it starts (:func:`begin_execution`),
and before every write to a tenant (:func:`assert_current_execution`) reads the run again: if a
later execution took over, or the run is no longer Running, this process stops at once, without
proposing any state (that would overwrite the current execution's), and writes nothing more.
"""

from __future__ import annotations

import logging
import os
import threading
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import PrefectHTTPStatusError

from clients.errors import ApiConnectionError

logger = logging.getLogger("m365_onboarding.fencing")

EXIT_SUPERSEDED = 75  # EX_TEMPFAIL: this process gave way to the run's current execution
_executions: dict[UUID, int] = {}  # flow run id -> the run_count this process runs as
_lock = threading.Lock()


class ExecutionUnconfirmed(ApiConnectionError):
    """The Prefect API could not say whether this process is still its run's execution (retried; nothing written)."""


def _current_run_id() -> UUID | None:
    context = FlowRunContext.get()
    return context.flow_run.id if context is not None and context.flow_run is not None else None


def _read(run_id: UUID) -> tuple[int, bool, str]:
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
    except (httpx.HTTPError, PrefectHTTPStatusError) as exc:
        raise ExecutionUnconfirmed(f"flow run {run_id}: the Prefect API did not answer ({type(exc).__name__}); nothing is written until it does") from exc
    state = run.state
    return run.run_count, bool(state and state.is_running()), (state.name if state else None) or "no state"


def begin_execution() -> int | None:
    """Remember which execution of the current flow run this process is (None outside a flow run)."""
    run_id = _current_run_id()
    if run_id is None:
        return None
    run_count, _, _ = _read(run_id)
    with _lock:
        _executions[run_id] = run_count
    return run_count


def assert_current_execution() -> None:
    """Before a write: go on only while this process is still its run's current, Running execution."""
    run_id = _current_run_id()
    with _lock:
        mine = _executions.get(run_id) if run_id is not None else None
    if run_id is None or mine is None:
        return  # not an onboarding run's execution (a dry run, a test calling a step directly)
    run_count, running, state = _read(run_id)
    if run_count == mine and running:
        return
    logger.error("flow_run=%s execution %d stops: the run is %s at execution %d; that execution goes on, this one writes nothing",
                 run_id, mine, state, run_count)
    logging.shutdown()
    os._exit(EXIT_SUPERSEDED)  # no state proposed, no cleanup that could report for the run
