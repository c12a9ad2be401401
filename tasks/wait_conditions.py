"""What each durable wait waits for, by name, so the flow and the resumer's pre-check agree.

The flow checks a condition after each numbered check; the resumer evaluates the same condition on a
read-only observation before it wakes a suspended run (see ``flows/resume_onboarding.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from tasks.security_device import Stage
from tasks.step import Outcome, StepResult


def _converged(result: StepResult) -> bool:
    return result.outcome == Outcome.CONVERGED


def _customer_changed(result: StepResult) -> bool:
    # guide mode: the admin's change is seen; what is left (e.g. activation) is outside their hands
    return result.outcome in (Outcome.CONVERGED, Outcome.WAITING)


def _stage_in(*stages: Stage) -> Callable[[StepResult], bool]:
    return lambda result: result.observed.get("stage") in stages


def _alerting(result: StepResult) -> bool:
    return result.observed.get("first_expel_alert_at") is not None


WAIT_DONE: dict[str, Callable[[StepResult], bool]] = {
    "converged": _converged,
    "customer_change": _customer_changed,
    "device_healthy": _stage_in(Stage.HEALTHY, Stage.DATA_FLOWING, Stage.ALERTING),
    "first_data": _stage_in(Stage.DATA_FLOWING, Stage.ALERTING),
    "first_alerts": _alerting,
}

# What a person is told a wait is for, when the last observation does not say it more precisely.
WAITING_FOR: dict[str, str] = {
    "admin_consent": "the customer's admin to grant consent",
    "audit_activation": "auditing to take effect (up to 60 minutes)",
    "device_healthy": "the device's first healthy check",
    "first_data": "data to flow (first vendor alert)",
    "first_alerts": "the first Expel alert (36-72 h)",
}
