"""Fixtures for step tests: a sandbox whose replication lag passes in about a second, and contexts."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from clients.auth import TokenProvider
from m365_onboarding.settings import Cloud, OnboardingSettings, TimingSettings
from tasks.context import TenantContext
from tests.conftest import SCENARIOS, WORKBENCH_ORG
from tests.sandbox_harness import SandboxHandle, start_sandbox

TIME_SCALE = 30  # the standard scenario's 30 s replication lag takes one real second


@pytest.fixture(scope="session")
def shared_step_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    handle = start_sandbox(tmp_path_factory.mktemp("step-sandbox"), SCENARIOS / "standard.yaml", time_scale=TIME_SCALE)
    yield handle
    handle.stop()


@pytest.fixture
def step_sandbox(shared_step_sandbox: SandboxHandle) -> SandboxHandle:
    shared_step_sandbox.reset()
    return shared_step_sandbox


def sandbox_settings(sandbox: SandboxHandle) -> OnboardingSettings:
    """Settings pointing at a running sandbox, as `m365-onboard sandbox --write-env` would set them."""
    return OnboardingSettings(
        cloud=Cloud.SANDBOX,
        login_base_url=sandbox.base_url("login"),
        graph_base_url=sandbox.base_url("graph"),
        exchange_base_url=sandbox.base_url("exchange"),
        management_activity_base_url=sandbox.base_url("management_activity"),
        workbench_base_url=sandbox.base_url("workbench"),
        ca_bundle=sandbox.ca_bundle,
        timing=TimingSettings(consistency_deadline_s=20, consistency_interval_s=0.2, consistent_reads=2, http_retries=2),
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def make_context(step_sandbox: SandboxHandle) -> Callable[..., TenantContext]:
    """Build a TenantContext for a scenario tenant, with the app's client secret."""
    settings = sandbox_settings(step_sandbox)

    def build(tenant_id: str, organization_name: str = "", provider_org_id: str = WORKBENCH_ORG) -> TenantContext:
        tokens = TokenProvider(settings.endpoints().login, step_sandbox.client_id, step_sandbox.app_secret, ca_bundle=settings.ca_bundle)
        return TenantContext(tenant_id=tenant_id, organization_name=organization_name, provider_org_id=provider_org_id, settings=settings, tokens=tokens)

    return build
