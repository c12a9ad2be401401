"""`m365-onboard plan`: the dry run a person runs before onboarding a tenant. It must touch nothing."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from core.catalogue import StepName
from m365_onboarding.cli import app
from tasks.catalogue import CATALOGUE
from tests.conftest import CONFIGURED, FRESH, NEVER_CONSENTS, WORKBENCH_ORG
from tests.sandbox_harness import SandboxHandle, sandbox_env, save_credential_blocks

pytestmark = pytest.mark.slow  # needs a Prefect server

runner = CliRunner()



@pytest.fixture
def block_flags(prefect_server: None, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    for key, value in sandbox_env(sandbox).items():
        monkeypatch.setenv(key, value)
    names = save_credential_blocks(sandbox)
    return ["--provider-app-block", names.provider_app, "--workbench-block", names.workbench]


def _plan(tenant: str, name: str, flags: list[str], *extra: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["plan", "--tenant-id", tenant, "--organization", name, "--provider-org", WORKBENCH_ORG, *flags, *extra])
    return result.exit_code, result.stdout, result.stderr


def _table_actions(table: str) -> dict[str, str]:
    """The step and action columns of the plan's table, by step: a row's first line holds both."""
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in table.splitlines() if line.startswith("│")]
    return {row[0]: row[1] for row in cells if row and row[0] in {s.value for s in StepName}}


def _writes(sandbox: SandboxHandle) -> list[str]:
    """Requests that could change something: not a read, a token request, or an Exchange Get- cmdlet."""
    return [f"{r['method']} {r['path']} {r['operation']}" for r in sandbox.request_log()
            if r["method"] != "GET" and not r["path"].endswith("/token") and not (r["operation"] or "").startswith("Get-")]


def test_a_fresh_tenant_plans_every_change_and_nothing_is_written(sandbox: SandboxHandle, block_flags: list[str]) -> None:
    before = sandbox.tenant_state(FRESH)
    code, stdout, stderr = _plan(FRESH, "Fresh Corp", block_flags, "--json")

    assert code == 0, stderr
    plan = json.loads(stdout)
    actions = {s["step"]: s["action"] for s in plan["steps"]}
    assert actions == {"admin_consent": "none", "console_access": "create", "cross_tenant_access": "create",
                       "unified_audit_log": "update", "security_device": "create"}
    cross = next(s for s in plan["steps"] if s["step"] == "cross_tenant_access")
    assert any("isMfaAccepted" in c for c in cross["changes"]), cross
    assert _writes(sandbox) == []
    assert sandbox.tenant_state(FRESH) == before


def test_a_configured_tenant_plans_no_change_in_its_directory(sandbox: SandboxHandle, block_flags: list[str]) -> None:
    code, stdout, stderr = _plan(CONFIGURED, "Configured Inc", block_flags)

    assert code == 0, stderr
    assert "Plan for Configured Inc" in stdout and "nothing is changed" in stdout
    actions = _table_actions(stdout)
    assert list(actions) == [spec.name for spec, _ in CATALOGUE.planned()], stdout  # one row per step, in the guide's order
    assert (actions["admin_consent"], actions["cross_tenant_access"]) == ("none", "none"), stdout
    assert _writes(sandbox) == []


def test_without_consent_the_steps_say_what_they_need(sandbox: SandboxHandle, block_flags: list[str]) -> None:
    code, stdout, stderr = _plan(NEVER_CONSENTS, "Never Consents LLC", block_flags, "--json")

    assert code == 0, stderr
    steps = {s["step"]: s for s in json.loads(stdout)["steps"]}
    assert steps["admin_consent"]["action"] == "manual"
    for name in ("console_access", "cross_tenant_access", "unified_audit_log"):
        assert steps[name]["action"] == "cannot plan" and "consent" in steps[name]["note"], steps[name]


def test_a_wrong_organization_name_is_one_clear_error(sandbox: SandboxHandle, block_flags: list[str]) -> None:
    code, stdout, stderr = _plan(FRESH, "Fresh Corporation", block_flags)

    assert code == 1
    assert "named 'Fresh Corp' in Entra, not 'Fresh Corporation'" in stderr and "Traceback" not in stderr + stdout
    assert stderr.count("\n") == 2 and stderr.splitlines()[1].startswith("next: ")
    assert stderr.count("Confirm with the customer") == 1, stderr  # the next action is said once


def test_bad_input_exits_2_naming_what_is_wrong(block_flags: list[str]) -> None:
    code, _, stderr = _plan("not-a-guid", "Fresh Corp", block_flags)
    assert code == 2 and "--tenant-id: expected a GUID" in stderr

    code, _, stderr = _plan(FRESH, "Fresh Corp", ["--provider-app-block", "no-such-block"])
    assert code == 2 and "no-such-block" in stderr


def test_an_unreachable_prefect_api_is_one_line_and_exit_1(sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as probe:  # a port nothing listens on: the blocks cannot be read
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
        code, stdout, stderr = _plan(FRESH, "Fresh Corp", [])
    assert code == 1
    assert stderr.startswith("error: cannot plan: ") and stderr.count("\n") == 1 and "Traceback" not in stdout + stderr, stderr
