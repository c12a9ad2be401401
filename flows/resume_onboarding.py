"""Wakes a suspended onboarding run when its next check is due, and restarts a crashed one.

Prefect 3.9 has no "suspend until": the onboarding run schedules a run of this deployment at the
time of its next check, then suspends and releases its worker. This run resumes it; the onboarding
run re-executes from the top, gets every finished step back from its cache, and checks again.

The crash-recovery automation (``automations/definitions.py``) also starts this deployment for an
onboarding run that Crashed (its process died). Such a run is rescheduled, at most
``M365_ONBOARD_RECOVERY__MAX_RECOVERIES`` times, and re-executes the same way.
"""

from __future__ import annotations

from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.exceptions import FlowPauseTimeout, NotPausedError
from prefect.flow_runs import resume_flow_run
from prefect.states import Scheduled

from m365_onboarding.settings import OnboardingSettings


def restart_crashed(flow_run_id: str, max_recoveries: int) -> str:
    """Reschedule a Crashed run unless it has crashed more than ``max_recoveries`` times."""
    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        if run.state is None or run.state.name != "Crashed":
            logger.info("flow_run=%s is %s, not Crashed; nothing to restart", flow_run_id, run.state and run.state.name)
            return "not-crashed"
        crashes = sum(1 for state in client.read_flow_run_states(run.id) if state.name == "Crashed")
        if crashes > max_recoveries:
            logger.error("flow_run=%s run=%s crashed %d times; not restarting it again: look at its logs", flow_run_id, run.name, crashes)
            return "gave-up"
        # Forced: Crashed is terminal, and this run was checked to be Crashed just above.
        client.set_flow_run_state(run.id, Scheduled(name="AwaitingRecovery", message=f"restart {crashes} of {max_recoveries} after a crash"), force=True)
    logger.warning("flow_run=%s run=%s crashed (%d of %d restarts); rescheduled, finished steps come from the cache", flow_run_id, run.name, crashes, max_recoveries)
    return "restarted"


@flow(name="resume-onboarding", flow_run_name="resume-{flow_run_id}", retries=2, retry_delay_seconds=10)
def resume_onboarding(flow_run_id: str) -> str:
    """Resume the onboarding run ``flow_run_id`` if suspended, restart it if it crashed, else leave it alone."""
    logger = get_run_logger()
    try:
        resume_flow_run(flow_run_id)
    except NotPausedError:
        return restart_crashed(flow_run_id, OnboardingSettings().recovery.max_recoveries)
    except FlowPauseTimeout:
        logger.warning("flow_run=%s passed its wait limit before it could be resumed", flow_run_id)
        return "timed-out"
    logger.info("flow_run=%s resumed", flow_run_id)
    return "resumed"
