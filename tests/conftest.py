"""Shared fixtures: one real sandbox process per test session, reset before each test that uses it,
and (in tests/cli, tests/flows and tests/tasks) a test Prefect server per package for the tests
that run flows and tasks in-process.

Tests that need a Prefect server (or start a demo, a worker) are marked ``slow``: ``make test-fast``
leaves them out, ``make test`` runs everything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.context import TenantContext
from tasks.runtime import tenant_context
from tests.sandbox_harness import SandboxHandle, sandbox_settings, start_sandbox
from tests.webhook_receiver import WebhookReceiver

SCENARIOS = Path(__file__).parent / "scenarios"

# Telemetry writes make the test server's SQLite report "database is locked" (Prefect notes §10).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

FRESH = "11111111-1111-4111-8111-111111111111"
DEHYDRATED = "22222222-2222-4222-8222-222222222222"
CONFIGURED = "33333333-3333-4333-8333-333333333333"
NEVER_CONSENTS = "44444444-4444-4444-8444-444444444444"
LATE_CONSENT = "55555555-5555-4555-8555-555555555555"
REFUSES = "66666666-6666-4666-8666-666666666666"
PARTIAL = "77777777-7777-4777-8777-777777777777"
UNHEALTHY = "88888888-8888-4888-8888-888888888888"
QUIET = "99999999-9999-4999-8999-999999999999"
OTHER_ORG = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
PROVIDER_TENANT = "1cde81fd-b430-4035-b24d-709921922876"
WORKBENCH_ORG = "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d"
OTHER_WORKBENCH_ORG = "7a7a7a7a-1111-4222-8333-944444444444"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that uses the Prefect server must be marked slow, so the fast lane never starts one."""
    unmarked = [item.nodeid for item in items if "prefect_server" in getattr(item, "fixturenames", ()) and item.get_closest_marker("slow") is None]
    if unmarked:
        raise pytest.UsageError(f"these tests use a Prefect server but are not marked slow (pytestmark = pytest.mark.slow): {unmarked}")


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    """A webhook receiver of the module's own, for notification blocks to post to (``webhook.url(channel)``)."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    handle = start_sandbox(tmp_path_factory.mktemp("sandbox"), SCENARIOS / "standard.yaml")
    yield handle
    handle.stop()


@pytest.fixture
def sandbox(shared_sandbox: SandboxHandle) -> SandboxHandle:
    """The session's sandbox, reset to the scenario's starting state (faults and log cleared)."""
    shared_sandbox.reset()
    return shared_sandbox


STEP_TIME_SCALE = 30  # the standard scenario's 30 s replication lag takes one real second


@pytest.fixture(scope="session")
def shared_step_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    handle = start_sandbox(tmp_path_factory.mktemp("step-sandbox"), SCENARIOS / "standard.yaml", time_scale=STEP_TIME_SCALE)
    yield handle
    handle.stop()


@pytest.fixture
def step_sandbox(shared_step_sandbox: SandboxHandle) -> SandboxHandle:
    """A sandbox for step and client tests, on compressed time, reset before each test."""
    shared_step_sandbox.reset()
    return shared_step_sandbox


@pytest.fixture
def make_context(step_sandbox: SandboxHandle) -> Callable[..., TenantContext]:
    """Build a TenantContext for a scenario tenant, with the app's client secret and a Workbench key (by name).

    ``timing`` and ``provider`` override those settings, as the environment would for a run.
    """
    base = sandbox_settings(step_sandbox)

    def build(
        tenant_id: str, organization_name: str = "", provider_org_id: str = WORKBENCH_ORG, workbench_key: str | None = "onboarding",
        timing: dict[str, Any] | None = None, provider: dict[str, Any] | None = None,
    ) -> TenantContext:
        settings = base.model_copy(update={"timing": base.timing.model_copy(update=timing or {}),
                                           "provider": base.provider.model_copy(update=provider or {})})
        key = step_sandbox.workbench_key(workbench_key) if workbench_key else None
        return tenant_context(tenant_id, organization_name, provider_org_id, settings, step_sandbox.client_id, step_sandbox.app_secret,
                              (lambda: f"Bearer {key}") if key else None)

    return build
