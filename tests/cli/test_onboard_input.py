"""What `m365-onboard onboard` checks before it starts anything: cheaply, and naming what the team typed.

Validating the team's CSV file imports the request models, not the flow, the clients or Prefect.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from m365_onboarding.cli import app
from tests.prefect_harness import PROJECT

CHECK = """
import json, sys
from pathlib import Path
from m365_onboarding.onboard import requests_from_csv
[request] = requests_from_csv(Path(sys.argv[1]))
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"flows", "tasks", "clients", "automations", "prefect", "requests", "msal"})
print(json.dumps({"tenant_id": request.tenant_id, "mode": request.modes.unified_audit_log, "imported": heavy}))
"""


def test_validating_a_csv_row_imports_no_flow_no_client_and_no_prefect(tmp_path: Path) -> None:
    rows = tmp_path / "tenants.csv"
    rows.write_text("tenant_id,organization_name,provider_org_id,customer_contact_email,unified_audit_log\n"
                    "c0c0c0c0-0000-4000-8000-000000000001,Csv Corp,0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d,admin@csv.example,guide\n")
    done = subprocess.run([sys.executable, "-c", CHECK, str(rows)], cwd=PROJECT, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == {"tenant_id": "c0c0c0c0-0000-4000-8000-000000000001", "mode": "guide", "imported": []}


def test_bad_flags_are_named_as_typed_and_nothing_is_started() -> None:
    result = CliRunner().invoke(app, ["onboard", "--tenant-id", "x", "--organization", "Org", "--provider-org", "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d",
                                      "--contact", "bad", "--console-access", "sometimes"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: --tenant-id: expected a GUID, got 'x'",
        "error: --contact: not an email address: 'bad' (expected one address such as admin@contoso.com, in ASCII (an international domain as xn--…), "
        "at most 254 characters)",
        "error: --console-access: Input should be 'apply', 'guide' or 'plan'",
        "nothing started: 3 problem(s)",
    ]
