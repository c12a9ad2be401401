"""The steps as Prefect tasks on a real (test) Prefect server: blocks by name, retries only when useful."""

from __future__ import annotations

import uuid

import pytest
from prefect import flow

from blocks.credentials import ProviderAppCredentials
from clients.errors import MissingPermission
from core.requests import BlockNames, TenantRequest
from core.results import Mode, Outcome
from tasks import admin_consent, console_access, cross_tenant_access, unified_audit_log
from tasks.step_tasks import check_tenant_task, step_task
from tests.conftest import FRESH, PARTIAL, WORKBENCH_ORG
from tests.sandbox_harness import SandboxHandle, sandbox_env, save_credential_blocks

pytestmark = pytest.mark.slow  # needs a Prefect server


@pytest.fixture
def blocks(prefect_server: None, step_sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> BlockNames:
    """Saved credential blocks and M365_ONBOARD_* settings pointing at the sandbox."""
    for key, value in sandbox_env(step_sandbox).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("M365_ONBOARD_TIMING__CONSISTENCY_DEADLINE_S", "20")
    monkeypatch.setenv("M365_ONBOARD_TIMING__CONSISTENCY_INTERVAL_S", "0.2")
    return save_credential_blocks(step_sandbox, organization_id=WORKBENCH_ORG)


def _request(tenant: str, name: str) -> TenantRequest:
    return TenantRequest(tenant_id=tenant, organization_name=name, provider_org_id=WORKBENCH_ORG)


def test_steps_run_as_tasks_with_credentials_from_blocks(step_sandbox: SandboxHandle, blocks: BlockNames) -> None:
    @flow
    def onboard_first_steps(request: TenantRequest) -> list[str]:
        consent = step_task(admin_consent.SPEC)(request, blocks, Mode.APPLY)
        console = step_task(console_access.SPEC)(request, blocks, Mode.APPLY)
        partner = step_task(cross_tenant_access.SPEC)(request, blocks, Mode.APPLY)
        return [consent.outcome, console.outcome, partner.outcome]

    assert onboard_first_steps(_request(FRESH, "Fresh Corp")) == [Outcome.CONVERGED] * 3
    state = step_sandbox.tenant_state(FRESH)["directory"]
    assert len(state["users"]) == 1 and len(state["partners"]) == 1


def test_the_checks_of_one_process_ask_for_the_tenant_once_and_share_its_clients(step_sandbox: SandboxHandle, blocks: BlockNames) -> None:
    @flow
    def one_process(request: TenantRequest) -> None:
        check_tenant_task(request, blocks)
        for spec in (admin_consent.SPEC, console_access.SPEC, cross_tenant_access.SPEC, unified_audit_log.SPEC):
            step_task(spec)(request, blocks, Mode.APPLY)

    one_process(_request(FRESH, "Fresh Corp"))
    discovery = [r for r in step_sandbox.request_log(service="login", method="GET", tenant=FRESH) if r["path"].endswith("/openid-configuration")]
    organization = [r for r in step_sandbox.request_log(service="graph", method="GET", tenant=FRESH) if r["path"] == "/v1.0/organization"]
    # The tenant check's discovery, and msal's when it first builds the tenant's app: not one more per step.
    assert (len(discovery), len(organization)) == (2, 1), (discovery, organization)


def test_a_missing_permission_fails_at_once_without_retries(step_sandbox: SandboxHandle, blocks: BlockNames) -> None:
    @flow
    def console_only(request: TenantRequest) -> None:
        step_task(console_access.SPEC)(request, blocks, Mode.APPLY)

    with pytest.raises(MissingPermission, match=r"User.Invite.All"):
        console_only(_request(PARTIAL, "Partial Grant BV"))
    posts = step_sandbox.request_log(service="graph", method="POST", tenant=PARTIAL)
    assert len(posts) == 1  # retried, it would have tried to invite again


def test_a_bad_request_is_refused_before_any_run(blocks: BlockNames) -> None:
    with pytest.raises(ValueError, match=r"expected a GUID"):
        TenantRequest(tenant_id="contoso", organization_name="Contoso", provider_org_id=WORKBENCH_ORG)
    with pytest.raises(ValueError, match=r"must not be empty"):
        TenantRequest(tenant_id=FRESH, organization_name="  ", provider_org_id=WORKBENCH_ORG)


def test_block_types_register_with_the_prefect_cli(prefect_server: None) -> None:
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    env = {**__import__("os").environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "blocks.credentials"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    listed = subprocess.run([sys.executable, "-m", "prefect", "block", "type", "ls"], capture_output=True, text=True, timeout=120, env=env)
    assert "m365-provider-app-credentials" in listed.stdout and "expel-workbench-credentials" in listed.stdout


def test_credentials_block_refuses_ambiguous_or_missing_credentials() -> None:
    with pytest.raises(ValueError, match=r"exactly one credential"):
        ProviderAppCredentials(client_id=str(uuid.uuid4()))
    with pytest.raises(ValueError, match=r"needs both certificate_pem and certificate_private_key"):
        ProviderAppCredentials(client_id=str(uuid.uuid4()), certificate_pem="-----BEGIN CERTIFICATE-----")
    with pytest.raises(ValueError, match=r"client_id must be a GUID"):
        ProviderAppCredentials(client_id="expel", client_secret="x")
    block = ProviderAppCredentials(client_id=str(uuid.uuid4()), client_secret="s3cr3t-value")
    assert "s3cr3t-value" not in repr(block) and "s3cr3t-value" not in block.model_dump_json()
