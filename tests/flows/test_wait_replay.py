"""A wait replayed by a re-executed run comes to the decisions it came to the first time.

A suspended run re-executes from the top when it resumes, and every wait before the current one
replays its cached checks. Deciding "limit reached" on the time of the replay failed a run that
resumed after an earlier wait's limit had passed in real time (the demo's Contoso, first_data, and
in production any run resumed more than 48 h after data began to flow); deciding on the time of
each check does not. The check here is a real cached Prefect task on a test server; no sandbox.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from prefect import flow, task

from core.catalogue import StepName
from core.requests import BlockNames, OnboardingRequest, TenantRequest
from core.results import Action, Mode, Outcome, Plan, StepResult
from core.settings import OnboardingSettings
from flows.run import OnboardingRun
from flows.waiting import WaitRunner
from tasks import security_device
from tasks.caching import ONCE_PER_RUN

pytestmark = pytest.mark.slow  # needs a Prefect server

TENANT = "5b0c3f3e-6c1e-4c52-9d8a-1f3b2a6e7c01"
ORG = "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d"
SCALE = 48 * 3600 / 2.0  # first_data's 48 h limit lasts 2 s
CHECKS: list[tuple[int, datetime]] = []  # (attempt, when) of each check that really ran


def _result(attempt: int) -> StepResult:
    stage = "data_flowing" if attempt >= 1 else "healthy"  # data flows from the second check on
    return StepResult(step="security_device", tenant_id=TENANT, mode=Mode.APPLY, outcome=Outcome.CONVERGED, message=f"check {attempt}",
                      plan=Plan(step="security_device", tenant_id=TENANT, action=Action.NONE), observed={"stage": stage})


@task(name="security_device", persist_result=True, cache_policy=ONCE_PER_RUN)
def fake_device_check(request: TenantRequest, blocks: BlockNames, mode: Mode, wait: StepName | None = None, attempt: int = 0) -> StepResult:
    CHECKS.append((attempt, datetime.now(UTC)))
    return _result(attempt)


@flow(persist_result=True)
def wait_twice(request: OnboardingRequest, pause_s: float) -> list[bool]:
    """The same wait, then its replay ``pause_s`` later (past its limit), in one flow run: the replay reads the cache."""
    run = OnboardingRun(request)
    reached = []
    for _ in range(2):
        _, done = WaitRunner(run, OnboardingSettings())._until_done(security_device.DATA, fake_device_check, Mode.APPLY)
        reached.append(done)
        time.sleep(pause_s)
    return reached


@pytest.fixture
def fast_waits(prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> Callable[[], OnboardingRequest]:
    monkeypatch.setenv("M365_ONBOARD_WAITS__TIME_SCALE", str(SCALE))
    monkeypatch.setenv("M365_ONBOARD_WAITS__FIRST_DATA__INTERVAL_S", str(0.2 * SCALE))  # a check every 0.2 s
    CHECKS.clear()
    return lambda: OnboardingRequest(tenant_id=TENANT, organization_name="Contoso", provider_org_id=ORG,
                                     customer_contact_email="admin@contoso.example")


def test_a_wait_replayed_after_its_limit_passed_still_ends_as_it_did(fast_waits: Callable[[], OnboardingRequest]) -> None:
    reached = wait_twice(fast_waits(), pause_s=2.5)  # the replay comes after the 2 s limit

    assert reached == [True, True]
    assert [attempt for attempt, _ in CHECKS] == [0, 1]  # the replay made no check of its own: both came from the cache
