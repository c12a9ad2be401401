"""Wakes a suspended onboarding run when its next check is due, and restarts a crashed one.

Prefect 3.9 has no "suspend until": the onboarding run schedules a run of this deployment at the
time of its next check, then suspends and releases its worker. Waking it means a process that
re-executes it from the top (every finished step comes back from its cache), so this run first
looks for itself: with the wait's :class:`~flows.scheduled_checks.PreCheck` it runs the step in plan mode
(it writes nothing, neither in the customer's tenant nor on the provider's side) and wakes the run
only when the wait's condition holds, the provider has its own part to do (the run does it under
its claim on the tenant), the observation fails (the run's own check reports it with its retries), or the run's stall,
reminder or limit time has come. Otherwise it schedules its successor one interval later and ends.

The crash-recovery automation (``automations/definitions.py``) also starts this deployment, with no
pre-check, for an onboarding run that Crashed (its process died), and for a crashed wait check (a
run of this deployment that a suspended run scheduled). Such a run is rescheduled, at most
``M365_ONBOARD_RECOVERY__MAX_RECOVERIES`` times: an onboarding run re-executes as above, a wait
check runs again with its own parameters.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter
from prefect.exceptions import FlowPauseTimeout, NotPausedError
from prefect.flow_runs import resume_flow_run
from prefect.states import Running, Scheduled

from core.settings import OnboardingSettings
from flows.scheduled_checks import PreCheck, schedule_resume


def heard_since(client: SyncPrefectClient, flow_run_id: UUID, since: datetime, listen_s: float) -> bool:
    """Whether the run's process sent a heartbeat after ``since``, listening up to ``listen_s`` for one."""
    query = EventFilter(event=EventNameFilter(name=["prefect.flow-run.heartbeat"]), resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]))
    deadline = time.monotonic() + listen_s
    while True:
        query.occurred = EventOccurredFilter(since=since, until=datetime.now(UTC))
        if client.read_events(filter=query, limit=1).events:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(5.0, listen_s / 6))


def restart_crashed(flow_run_id: str, max_recoveries: int, listen_s: float = 280) -> str:
    """Reschedule a Crashed run unless it has crashed more than ``max_recoveries`` times, or still lives.

    A run marked Crashed because the server heard nothing from it (the server was down, not the
    process) sends heartbeats again once the server is back: such a run is put back to Running,
    not restarted, so that it never gets a second process.
    """
    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        if run.state is None or run.state.name != "Crashed":
            logger.info("flow_run=%s is %s, not Crashed; nothing to restart", flow_run_id, run.state and run.state.name)
            return "not-crashed"
        history = client.read_flow_run_states(run.id)
        before = [state for state in history if state.name != "Crashed"]
        was_running = bool(before) and before[-1].is_running()  # only a process that ran can still be alive
        if was_running and heard_since(client, run.id, run.state.timestamp, listen_s=listen_s):
            client.set_flow_run_state(run.id, Running(message="its process still sends heartbeats: it was unheard, not crashed"), force=True)
            logger.warning("flow_run=%s run=%s was marked Crashed but its process lives; back to Running, not restarted", flow_run_id, run.name)
            return "alive"
        crashes = sum(1 for state in history if state.name == "Crashed")
        if crashes > max_recoveries:
            logger.error("flow_run=%s run=%s crashed %d times; not restarting it again: look at its logs", flow_run_id, run.name, crashes)
            return "gave-up"
        # Forced: Crashed is terminal, and this run was checked to be Crashed just above.
        client.set_flow_run_state(run.id, Scheduled(name="AwaitingRecovery", message=f"restart {crashes} of {max_recoveries} after a crash"), force=True)
    logger.warning("flow_run=%s run=%s crashed (%d of %d restarts); rescheduled", flow_run_id, run.name, crashes, max_recoveries)
    return "restarted"


class Verdict(StrEnum):
    WAKE = "wake"  # resume the run: its condition holds, its observation failed, or its own time has come
    SLEEP = "sleep"  # nothing for the run to do yet: check again one interval later
    STALE = "stale"  # the run waits at another pause (it was woken another way): that pause has its own resumer


def precheck_verdict(flow_run_id: str, precheck: PreCheck) -> Verdict:
    """Check the step (plan mode: the resumer never writes) and decide whether the suspended run needs waking now."""
    from tasks.catalogue import CATALOGUE  # the steps and their clients are needed only for a pre-check
    from tasks.step_tasks import precheck_step, provider_has_work

    logger = get_run_logger()
    tenant = precheck.request.tenant_id
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    if state is None or not state.is_paused():
        return Verdict.WAKE  # not suspended: the usual resume/restart logic decides
    if state.state_details.pause_key != precheck.suspend_key:
        logger.info("tenant=%s wait=%s the run now waits at %s, not %s; leaving it to that pause's resumer", tenant, precheck.wait,
                    state.state_details.pause_key, precheck.suspend_key)
        return Verdict.STALE
    if precheck.wake_by is None or datetime.now(UTC) >= precheck.wake_by:
        logger.info("tenant=%s wait=%s its stall, reminder or limit time has come; waking the run", tenant, precheck.wait)
        return Verdict.WAKE
    try:
        result = precheck_step(precheck.wait, precheck.request, precheck.blocks)
    except Exception as exc:  # the run's own check retries and reports it; do not hide it here
        logger.warning("tenant=%s wait=%s pre-check failed (%s: %s); waking the run to handle it", tenant, precheck.wait, type(exc).__name__, exc)
        return Verdict.WAKE
    if CATALOGUE.wait(precheck.wait).done(result):
        logger.info("tenant=%s wait=%s condition met (%s); waking the run", tenant, precheck.wait, result.message)
        return Verdict.WAKE
    if provider_has_work(result):
        logger.info("tenant=%s wait=%s the provider has its own part to do (%s); waking the run", tenant, precheck.wait, result.plan)
        return Verdict.WAKE
    logger.info("tenant=%s wait=%s not yet (%s); the run sleeps on", tenant, precheck.wait, result.waiting_for or result.message)
    return Verdict.SLEEP


@flow(name="resume-onboarding", flow_run_name="resume-{flow_run_id}", retries=2, retry_delay_seconds=10, result_serializer="json")
def resume_onboarding(flow_run_id: str, precheck: PreCheck | None = None, prechecks: int = 0) -> str:
    """Resume the onboarding run ``flow_run_id`` if suspended and due, restart it if it crashed, else leave it alone."""
    logger = get_run_logger()
    verdict = Verdict.WAKE if precheck is None else precheck_verdict(flow_run_id, precheck)
    if verdict == Verdict.STALE:
        return "stale"
    if verdict == Verdict.SLEEP:
        assert precheck is not None and precheck.wake_by is not None
        next_at = min(datetime.now(UTC) + timedelta(seconds=precheck.interval_s), precheck.wake_by)
        key = f"{precheck.suspend_key}-precheck-{prechecks + 1}"
        schedule_resume(key, flow_run_id, next_at, OnboardingSettings().resumer_deployment, precheck, prechecks + 1)
        logger.info("tenant=%s wait=%s next pre-check at %s", precheck.request.tenant_id, precheck.wait, next_at.isoformat())
        return "still-waiting"
    try:
        resume_flow_run(UUID(flow_run_id))
    except NotPausedError:
        recovery = OnboardingSettings().recovery
        return restart_crashed(flow_run_id, recovery.max_recoveries, recovery.listen_s)
    except FlowPauseTimeout:
        logger.warning("flow_run=%s passed its wait limit before it could be resumed", flow_run_id)
        return "timed-out"
    logger.info("flow_run=%s resumed", flow_run_id)
    return "resumed"
