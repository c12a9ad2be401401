"""Wakes a suspended onboarding run when its next check is due.

Prefect 3.9 has no "suspend until": the onboarding run schedules a run of this deployment at the
time of its next check, then suspends and releases its worker. This run resumes it; the onboarding
run re-executes from the top, gets every finished step back from its cache, and checks again.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.exceptions import FlowPauseTimeout, NotPausedError
from prefect.flow_runs import resume_flow_run


@flow(name="resume-onboarding", flow_run_name="resume-{flow_run_id}", retries=2, retry_delay_seconds=10)
def resume_onboarding(flow_run_id: str) -> str:
    """Resume the onboarding run ``flow_run_id``; a run that is no longer suspended is left alone."""
    logger = get_run_logger()
    try:
        resume_flow_run(flow_run_id)
    except NotPausedError:
        logger.info("flow_run=%s is not suspended (resumed already, or finished); nothing to do", flow_run_id)
        return "not-paused"
    except FlowPauseTimeout:
        logger.warning("flow_run=%s passed its wait limit before it could be resumed", flow_run_id)
        return "timed-out"
    logger.info("flow_run=%s resumed", flow_run_id)
    return "resumed"
