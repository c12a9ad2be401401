"""`m365-onboard deploy` and `m365-onboard onboard` against a real Prefect server, as the team uses them.

No worker runs here: started runs stay Scheduled, which is all `onboard` promises (the runs
themselves are tested end to end in tests/flows/).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings
from typer.testing import CliRunner

from blocks.credentials import ProviderAppCredentials, WorkbenchCredentials
from core.dispatch import sync_result
from m365_onboarding.cli import app
from tests.prefect_harness import PrefectStack, start_prefect
from tests.sandbox_harness import SandboxHandle
from tests.support import present

pytestmark = pytest.mark.slow  # needs a Prefect server

ORG = "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d"
HEADER = "tenant_id,organization_name,provider_org_id,customer_contact_email,unified_audit_log\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectStack]:
    stack = start_prefect(tmp_path_factory.mktemp("deploy-prefect"))
    try:
        with temporary_settings({PREFECT_API_URL: stack.api_url, PREFECT_UI_URL: stack.api_url.removesuffix("/api")}):
            yield stack
    finally:
        stack.stop()


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _report(text: str) -> dict[str, str]:
    """`deploy`'s lines ("<verb> <kind> <name>" in fixed columns) as {"<kind> <name>": verb}."""
    return {f"{line[11:22].strip()} {line[23:]}": line[:10].strip() for line in text.splitlines()}


def _runs() -> list:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs()


@pytest.fixture(scope="module")
def deployed(server: PrefectStack, shared_sandbox: SandboxHandle) -> str:
    code, out, err = _cli("deploy", "--from-sandbox", str(shared_sandbox.state_dir))
    assert code == 0, out + err
    return out


@pytest.mark.timeout(600)
def test_deploy_registers_everything_once_and_a_second_run_changes_nothing(deployed: str, shared_sandbox: SandboxHandle) -> None:
    verbs = _report(deployed)
    assert verbs == {
        "work pool m365-onboarding": "created",
        "block m365-provider-app": "created",
        "block expel-workbench": "created",
        "block m365-onboarding-results": "created",
        "deployment onboard-tenant": "created",
        "deployment resume-onboarding": "created",
        "automation m365-onboarding: mark silent runs Crashed": "created",
        "automation m365-onboarding: catch runs that never started": "created",
        "automation m365-onboarding: restart crashed onboarding runs": "created",
        "automation m365-onboarding: restart crashed wait checks": "created",
        "automation m365-onboarding: restart runs still crashed": "created",
    }, deployed
    app_block = sync_result(ProviderAppCredentials.load("m365-provider-app"))
    assert app_block.client_id == shared_sandbox.client_id and present(app_block.client_secret).get_secret_value() == shared_sandbox.app_secret()
    assert sync_result(WorkbenchCredentials.load("expel-workbench")).api_key.get_secret_value() == shared_sandbox.workbench_key()
    assert shared_sandbox.app_secret() not in deployed

    code, again, err = _cli("deploy", "--from-sandbox", str(shared_sandbox.state_dir))
    assert code == 0, again + err
    # Nothing new: the pool, blocks and automations are unchanged; prefect deploy rewrites the deployments in place.
    assert _report(again) == {name: "updated" if name.startswith("deployment") else "unchanged" for name in verbs}, again
    with get_client(sync_client=True) as client:
        assert len([a for a in client.read_automations() if "m365-onboarding" in (a.tags or [])]) == 5
        deployments = client.read_deployments()
        assert len(deployments) == 2
        # Both write their results to the one shared storage block, as JSON, whichever host runs them.
        assert all(d.job_variables["env"]["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] == "local-file-system/m365-onboarding-results"
                   and d.job_variables["env"]["PREFECT_RESULTS_DEFAULT_SERIALIZER"] == "json" for d in deployments), deployments


def test_deploy_without_credentials_for_a_missing_block_says_which(server: PrefectStack, tmp_path: Path) -> None:
    code, _, err = _cli("deploy", "--provider-app-block", "never-saved", "--workbench-block", "never-saved-either")
    assert code == 1
    assert err.startswith("error: block 'never-saved' (m365-provider-app-credentials) is not saved and no credential was given"), err
    code, _, err = _cli("deploy", "--from-sandbox", str(tmp_path))
    assert code == 2 and "sandbox.json not found" in err and err.count("\n") == 1, err


def test_a_csv_with_bad_rows_lists_every_problem_and_starts_nothing(deployed: str, tmp_path: Path) -> None:
    before = len(_runs())
    csv = tmp_path / "tenants.csv"
    csv.write_text(HEADER
                   + f"c0c0c0c0-0000-4000-8000-000000000001,Good One,{ORG},admin@good.example,\n"
                   + f"not-a-guid,Bad Tenant,{ORG},admin@bad.example,\n"
                   + f"c0c0c0c0-0000-4000-8000-000000000003,Bad Mail,{ORG},nobody,sometimes\n"
                   + f"c0c0c0c0-0000-4000-8000-000000000001,Twice,{ORG},admin@twice.example,\n")
    code, out, err = _cli("onboard", "--csv", str(csv))
    assert code == 2, out + err
    assert "tenants.csv line 3: tenant_id: expected a GUID, got 'not-a-guid'" in err
    assert "tenants.csv line 4: customer_contact_email: not an email address: 'nobody'" in err
    assert "tenants.csv line 4: unified_audit_log: Input should be 'apply', 'guide' or 'plan'" in err
    assert "tenants.csv line 5: tenant_id c0c0c0c0-0000-4000-8000-000000000001 is already on line 2" in err
    assert err.strip().endswith("nothing started: 4 problem(s)")
    assert len(_runs()) == before

    bad_header = tmp_path / "columns.csv"
    bad_header.write_text("tenant,organization_name\nx,y\n")
    code, _, err = _cli("onboard", "--csv", str(bad_header))
    assert code == 2 and "missing column(s): tenant_id, provider_org_id, customer_contact_email" in err and "unknown column(s): tenant" in err


def test_onboard_from_a_csv_and_from_flags_starts_one_run_each_with_links(deployed: str, server: PrefectStack, tmp_path: Path) -> None:
    csv = tmp_path / "tenants.csv"
    csv.write_text(HEADER
                   + f"d0d0d0d0-0000-4000-8000-000000000001,Csv One,{ORG},admin@one.example,guide\n"
                   + f"d0d0d0d0-0000-4000-8000-000000000002,Csv Two,{ORG},admin@two.example,\n")
    code, out, err = _cli("onboard", "--csv", str(csv))
    assert code == 0, out + err
    code, flag_out, err = _cli("onboard", "--tenant-id", "d0d0d0d0-0000-4000-8000-000000000003", "--organization", "Flag Three",
                               "--provider-org", ORG, "--contact", "admin@three.example", "--workbench-block", "wb-other")
    assert code == 0, flag_out + err
    runs = {r.parameters["request"]["tenant_id"]: r for r in _runs() if r.parameters.get("request", {}).get("tenant_id", "").startswith("d0d0d0d0")}
    assert len(runs) == 3
    one, two, three = (runs[f"d0d0d0d0-0000-4000-8000-00000000000{i}"] for i in (1, 2, 3))
    assert one.parameters["request"]["modes"]["unified_audit_log"] == "guide"
    assert two.parameters["request"]["modes"]["unified_audit_log"] is None
    assert three.parameters["request"]["blocks"] == {"provider_app": "m365-provider-app", "workbench": "wb-other"}
    assert "tenant:d0d0d0d0-0000-4000-8000-000000000001" in one.tags  # `status` finds it before it starts
    ui = server.api_url.removesuffix("/api")
    for run in (one, two):
        assert f"{ui}/runs/flow-run/{run.id}" in out
    assert f"{ui}/runs/flow-run/{three.id}" in flag_out


def test_onboard_flag_errors_name_the_flags_and_a_missing_deployment_is_one_line(deployed: str) -> None:
    code, _, err = _cli("onboard", "--tenant-id", "x", "--organization", "Org", "--provider-org", ORG)
    assert code == 2 and "error: missing --contact" in err, err
    code, _, err = _cli("onboard", "--tenant-id", "x", "--organization", "Org", "--provider-org", ORG, "--contact", "bad")
    assert code == 2 and "error: --tenant-id: expected a GUID, got 'x'" in err and "error: --contact: not an email address: 'bad'" in err, err
    code, _, err = _cli("onboard", "--tenant-id", "d0d0d0d0-0000-4000-8000-000000000009", "--organization", "Org", "--provider-org", ORG,
                        "--contact", "a@b.example", "--deployment", "onboard-tenant/missing")
    assert code == 1 and err.strip() == "error: deployment 'onboard-tenant/missing' not found: run `m365-onboard deploy` first", err
