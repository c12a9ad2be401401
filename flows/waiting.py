"""Durable waits for the onboarding flow: check, and if not there yet, come back later.

A wait is a series of numbered checks, each a cached task run (``<step>-<wait>-<attempt>``).
Between two checks the run either sleeps in-process (short pauses) or releases its worker: it
schedules the resumer deployment at the next check's time and suspends (long pauses). When the
run re-executes after a resume, the checks already made return from the cache, each suspend key
has already fired, and the loop arrives at the next check. The window (start, stall, limit) is
computed once and persisted, so a restart of the worker or the server loses no wait.

:class:`WaitRunner` runs a wait as its catalogue entry (:class:`~core.catalogue.WaitSpec`) says:
what ends it, its policy, whether the customer is asked and reminded, what it tries by itself
when it stalls, and what its limit means. Waking a run costs a process that re-executes it, so
the resumer run carries a :class:`PreCheck`: it checks the step first (plan mode: it writes
nothing) and wakes the run only when the wait is over, the provider has its own part to do, the
check fails, or the run's next stall, reminder or limit time has come (``flows/resume_onboarding.py``).

A check that still fails after its retries (an outage of Graph or Workbench, a timeout) is "not
yet" until the wait's limit, and a customer message whose channel fails is tried again at the next
check: neither ends a run that waits for days.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, RUN_ID
from prefect.context import FlowRunContext
from prefect.flow_runs import suspend_flow_run

from core.catalogue import StepName, WaitSpec
from core.errors import OnboardingError
from core.results import Action, Mode, Outcome, Plan, StepResult
from core.settings import OnboardingSettings, WaitPolicy
from flows.errors import WaitLimitReached
from flows.run import OnboardingRun
from flows.scheduled_checks import PreCheck, schedule_resume
from tasks.caching import ONCE_PER_RUN, STEP_ID
from tasks.customer_messages import first_request, notify_customer, reminder
from tasks.fencing import assert_current_execution
from tasks.step_tasks import TRANSIENT, StepTask, retry_on_stall
from tasks.tracking import Transition, record_retry, record_undelivered

GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class WaitWindow:
    started_at: datetime
    stalled_at: datetime
    deadline: datetime


@task(name="open_wait", persist_result=True, cache_policy=ONCE_PER_RUN)
def open_wait(name: StepName, policy: WaitPolicy) -> WaitWindow:
    """When this wait started, when it counts as stalled, and its deadline: fixed on the first execution."""
    now = datetime.now(UTC)
    return WaitWindow(now, now + timedelta(seconds=policy.stall_s), now + timedelta(seconds=policy.limit_s))


@task(name="pause_in_process", persist_result=True, cache_policy=STEP_ID + (INPUTS - "seconds") + RUN_ID)  # a replay does not sleep again
def pause_in_process(name: StepName, attempt: int, seconds: float) -> None:
    """A short pause, recorded so that a re-executed run does not sleep it again."""
    time.sleep(max(0.0, seconds))


class WaitRunner:
    """Runs the waits of one onboarding run, each as the catalogue declares it."""

    def __init__(self, run: OnboardingRun, settings: OnboardingSettings) -> None:
        self.run = run
        self.settings = settings
        self.request = run.request
        self.logger = get_run_logger()
        self._unsent: dict[str, tuple[str, str]] = {}  # customer messages whose channel failed: sent again at the next check

    def wait_for(self, wait: WaitSpec, check: StepTask, mode: Mode) -> StepResult:
        """Check with ``check`` until the wait is over; returns the last result.

        At the limit the wait fails the run (with its step's own error where it has one), unless
        reaching it is a quiet end of the onboarding, which sets the run's outcome.
        """
        result, reached = self.run.guarded(wait.name, self._until_done, wait, check, mode)
        if reached:
            return result
        if wait.quiet_end is not None:
            self.run.outcome = wait.quiet_end.outcome
            return result.model_copy(update={"message": wait.quiet_end.detail})
        error = wait.limit_error(result) if wait.limit_error else WaitLimitReached(
            f"{wait.name}: still waiting for {result.waiting_for or wait.waiting_for} when the limit came; last observed: {result.message}")
        self.run.fail(wait.name, error)

    def _until_done(self, wait: WaitSpec, check: StepTask, mode: Mode) -> tuple[StepResult, bool]:
        policy = self.settings.waits.policy(wait.policy)
        window = open_wait(wait.name, policy)
        attempt = 0
        while True:
            result = self._check(wait, check, mode, attempt)
            if wait.done(result):
                return result, True
            # Decided on when the check was made, not on now: a run re-executed after a resume
            # replays its cached checks, and must come to the same decisions as the first time.
            now = result.checked_at
            if now >= window.deadline:
                return result, False
            if attempt == 0:
                self._waiting(wait, result, window)
            self._send_unsent()
            if wait.on_customer and policy.remind_s is not None and now >= window.started_at + timedelta(seconds=policy.remind_s):
                self._remind(wait, result, policy)  # sent once per run: a cached task
            if now >= window.stalled_at:
                self._stalled(wait, result, window, policy)
            self._pause(wait, result, window, policy, now, attempt)
            attempt += 1

    def _check(self, wait: WaitSpec, check: StepTask, mode: Mode, attempt: int) -> StepResult:
        """One check; one that still fails after its retries (an outage, a timeout) is "not yet" until the limit."""
        try:
            return check(self.request.tenant, self.request.blocks, mode, wait=wait.name, attempt=attempt)
        except TRANSIENT as exc:
            self.logger.warning("tenant=%s wait=%s attempt=%d check failed after its retries, counted as not yet: %s",
                                self.request.tenant_id, wait.name, attempt, exc)
            return unobserved(wait, self.request.tenant_id, mode, exc)

    # --- what people are told -----------------------------------------------------------------------
    def _waiting(self, wait: WaitSpec, result: StepResult, window: WaitWindow) -> None:
        self.run.mark(wait.name, Transition.WAITING, result.message, waiting_for=result.waiting_for or wait.waiting_for,
                      until=window.deadline, next_action=result.instructions)
        if wait.on_customer:
            subject, body = first_request(self.request, self.request.customer_contact_email, wait, result.instructions, self.settings.provider.display_name)
            self._notify(f"{wait.name}-request", subject, body)

    def _remind(self, wait: WaitSpec, result: StepResult, policy: WaitPolicy) -> None:
        waited_h = (policy.remind_s or 0) * self.settings.waits.time_scale / 3600
        subject, body = reminder(self.request, self.request.customer_contact_email, wait, result.instructions,
                                 self.settings.provider.display_name, waited_h)
        self._notify(f"{wait.name}-reminder", subject, body)

    def _notify(self, kind: str, subject: str, body: str) -> None:
        """Send one customer message; a channel that fails (mail server down) does not end the wait: it is tried again."""
        try:
            assert_current_execution()  # a superseded execution sends nothing: the current one does
            notify_customer(self.request.tenant, kind, subject, body, self.settings.notifications.customer_block, self.request.customer_contact_email)
        except Exception as exc:  # any failure of the channel, after the task's own retries
            reason = f"{type(exc).__name__}: {exc}"
            first = kind not in self._unsent
            self._unsent[kind] = (subject, body)
            if first:
                self.logger.error("tenant=%s message=%s not sent (%s); tried again at the next check", self.request.tenant_id, kind, reason)
                record_undelivered(self.request.tenant, kind, reason)
            return
        self._unsent.pop(kind, None)

    def _send_unsent(self) -> None:
        for kind, (subject, body) in list(self._unsent.items()):
            self._notify(kind, subject, body)

    def _stalled(self, wait: WaitSpec, result: StepResult, window: WaitWindow, policy: WaitPolicy) -> None:
        self.run.mark(wait.name, Transition.STALLED, f"expected within {policy.expected_s:.0f}s", waiting_for=result.waiting_for or wait.waiting_for,
                      until=window.deadline, next_action=result.instructions)
        if wait.on_stall is None:
            return
        try:
            finding = retry_on_stall(self.request.tenant, self.request.blocks, wait.name)
        except (OnboardingError, TimeoutError) as exc:
            finding = f"{wait.on_stall.action} failed: {exc}"
        self.logger.warning("tenant=%s step=%s stalled; %s: %s", self.request.tenant_id, wait.name, wait.on_stall.action, finding)
        record_retry(self.request.tenant, wait.name, wait.on_stall.action, finding)

    # --- between two checks -------------------------------------------------------------------------
    def _pause(self, wait: WaitSpec, result: StepResult, window: WaitWindow, policy: WaitPolicy, now: datetime, attempt: int) -> None:
        """Sleep in-process until the next check, or schedule it and suspend (long pauses, deployed runs only)."""
        next_at = min(now + timedelta(seconds=policy.interval_s), window.deadline)
        planned = (next_at - now).total_seconds()  # as decided when the check was made (a replay decides the same)
        context = FlowRunContext.get()
        flow_run = context.flow_run if context else None
        seen = result.waiting_for or result.message
        suspend_from_s = self.settings.waits.suspend_from_s / self.settings.waits.time_scale
        if flow_run is None or flow_run.deployment_id is None or planned < suspend_from_s:
            pause = max(0.0, (next_at - datetime.now(UTC)).total_seconds())
            self.logger.info("tenant=%s wait=%s attempt=%d not yet (%s); next check in %.1fs", self.request.tenant_id, wait.name, attempt, seen, pause)
            pause_in_process(wait.name, attempt, pause)
            return
        self.logger.info("tenant=%s wait=%s attempt=%d not yet (%s); releasing the worker until %s", self.request.tenant_id, wait.name, attempt,
                         seen, next_at.isoformat())
        key = f"{wait.name}-{attempt}"
        precheck = PreCheck(wait=wait.name, request=self.request.tenant, blocks=self.request.blocks, suspend_key=key,
                            interval_s=policy.interval_s, wake_by=_wake_by(window, policy, now, wait.on_customer)) if wait.prechecked else None
        schedule_resume(key, str(flow_run.id), next_at, self.settings.resumer_deployment, precheck)
        suspend_flow_run(key=key, timeout=int(((window.deadline - now) + GRACE).total_seconds()))


def _wake_by(window: WaitWindow, policy: WaitPolicy, now: datetime, reminds: bool) -> datetime:
    """The earliest moment the run itself must act again (stall, reminder, limit), whatever it observes."""
    moments = [window.deadline]
    if now < window.stalled_at:
        moments.append(window.stalled_at)
    if reminds and policy.remind_s is not None and now < (remind_at := window.started_at + timedelta(seconds=policy.remind_s)):
        moments.append(remind_at)
    return min(moments)


def unobserved(wait: WaitSpec, tenant_id: str, mode: Mode, error: Exception) -> StepResult:
    """The result of a check that could not observe: not done, with why, so the wait goes on."""
    message = f"{wait.name}: the check failed after its retries ({type(error).__name__}: {error}); counted as not yet"
    return StepResult(step=wait.name.value, tenant_id=tenant_id, mode=mode, plan=Plan(step=wait.name.value, tenant_id=tenant_id, action=Action.NONE),
                      outcome=Outcome.WAITING, message=message, waiting_for=wait.waiting_for)
