"""When the demo stops watching, and whom it onboards (the whole demo runs in tests/test_quick_start.py)."""

from __future__ import annotations

import uuid

import pytest
from typer.testing import CliRunner

from m365_onboarding.cli import app
from m365_onboarding.demo import DEMO_BLOCKS, finished, sample_requests, settled
from m365_onboarding.status import TenantStatus


def _status(run_state: str, step: str | None = None, stalled: bool = False) -> TenantStatus:
    return TenantStatus(tenant_id=str(uuid.uuid4()), organization="Org", run_name="onboard-Org", run_id=uuid.uuid4(),
                        run_state=run_state, current_step=step, step_state="stalled" if stalled else "waiting", stalled=stalled)


def test_the_demo_waits_for_provider_side_stalls_but_not_for_a_customer_who_never_acts() -> None:
    assert finished(_status("Completed")) and finished(_status("Failed"))
    assert finished(_status("Running", "admin_consent", stalled=True))  # only the customer's admin can end it
    assert finished(_status("Suspended", "unified_audit_log", stalled=True))  # a guide-mode step on the customer
    assert not finished(_status("Running", "admin_consent"))  # not stalled yet: the reminder and stall are still to come
    assert not finished(_status("Suspended", "device_healthy", stalled=True))  # the provider's side: it retries by itself
    assert not finished(None)  # not started yet


def test_the_last_table_waits_for_a_completed_runs_last_step_events() -> None:
    assert not settled(_status("Completed", "first_alerts"))  # the run state came before the step's completed event
    assert settled(_status("Completed")) and settled(_status("Running", "admin_consent", stalled=True)) and settled(None)


def test_the_demo_onboards_every_tenant_of_the_default_scenario_with_its_own_blocks() -> None:
    requests = sample_requests()
    assert [r.organization_name for r in requests] == ["Contoso", "Fabrikam", "Northwind Traders"]
    assert {r.provider_org_id for r in requests} == {"0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d"}
    assert all(r.blocks == DEMO_BLOCKS and r.customer_contact_email.startswith("admin@") for r in requests)
    assert DEMO_BLOCKS.provider_app != "m365-provider-app"  # never overwrites a real tenant's blocks on a shared server


@pytest.mark.parametrize(("args", "error"), [
    (["--timeout", "0"], "--timeout must be positive, got 0; nothing was started"),
    (["--time-scale", "-5", "--keep-running"], "--time-scale must be positive, got -5; nothing was started"),
])
def test_a_bad_demo_option_is_named_and_starts_nothing(args: list[str], error: str, tmp_path) -> None:
    result = CliRunner().invoke(app, ["demo", "--state-dir", str(tmp_path), *args])
    assert result.exit_code == 2 and error in result.output, result.output
    assert not (tmp_path / "demo").exists()  # no server, sandbox or state folder was started
