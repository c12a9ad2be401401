"""Every way an onboarding run can fail, deployed, as the team sees it.

A real server with the project deployed (the team's notifications going to a local webhook), one
process worker, the sandbox on compressed time. Five tenants, each ending in one of the flow's
failure branches: the tenant check fails (no such tenant), consent lacks a permission until the
wait's limit, a step is blocked (the app cannot even read it), a guide-mode step is not done by the
customer before its limit, and Workbench refuses the device (a key without the Organization Admin
role). For each, what the team checks: the run ends Failed; ``m365-onboard status`` names the step
that failed and why; the team gets one "run failed" message saying why; and nothing is written that
the failure should have prevented.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks.credentials import WorkbenchCredentials
from core.requests import BlockNames
from tests.deployed import ORG, deployed_stack, devices, m365_onboard, onboard, running_sandbox, states, wait_until_final, worker_env
from tests.prefect_harness import PrefectStack
from tests.sandbox_harness import SandboxHandle
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow  # a Prefect server, a worker and the sandbox

SCALE = 3600
UNKNOWN, PARTIAL, BLOCKED, GUIDE, REFUSED = (f"9f9f9f9f-0000-4000-8000-00000000000{i}" for i in range(1, 6))
NAMES = {UNKNOWN: "No Such Tenant", PARTIAL: "Partial Consent", BLOCKED: "Blocked Audit", GUIDE: "Guide Not Done", REFUSED: "Device Refused"}
# The step status names and a phrase of the reason a person acts on, for each tenant.
EXPECTED = {
    UNKNOWN: ("tenant", "not found"),
    PARTIAL: ("admin_consent", "User.Read.All"),
    BLOCKED: ("unified_audit_log", "Global Reader"),
    GUIDE: ("cross_tenant_access", "limit"),
    REFUSED: ("security_device", "Organization Admin"),
}
ANALYST_KEY = "analyst"
SCENARIO: dict[str, Any] = {
    "replication_lag": "20s",
    "workbench": {"organizations": [{"id": ORG, "name": "Failing Customers"}],
                  "api_keys": [{"name": "onboarding", "organization": ORG, "generate": True},
                               {"name": ANALYST_KEY, "organization": ORG, "role": "organization_analyst", "generate": True}]},
    "tenants": [  # UNKNOWN is not among them
        {"id": PARTIAL, "display_name": NAMES[PARTIAL], "initial_domain": "partial.onmicrosoft.com", "consent": {"withhold": ["User.Read.All"]}},
        {"id": BLOCKED, "display_name": NAMES[BLOCKED], "initial_domain": "blocked.onmicrosoft.com", "consent": {"app_directory_roles": []}},
        {"id": GUIDE, "display_name": NAMES[GUIDE], "initial_domain": "guide.onmicrosoft.com", "audit": {"enabled": True}},
        {"id": REFUSED, "display_name": NAMES[REFUSED], "initial_domain": "refused.onmicrosoft.com", "audit": {"enabled": True}},
    ],
}
# Waits on the customer end after 8 h of scenario time (8 s here), checked hourly, in-process.
SHORT_WAITS = {f"M365_ONBOARD_WAITS__{wait}__{key}": str(hours * 3600) for wait in ("ADMIN_CONSENT", "CUSTOMER_CHANGE")
               for key, hours in (("EXPECTED_S", 2), ("REMIND_S", 2), ("STALL_S", 4), ("LIMIT_S", 8), ("INTERVAL_S", 1))}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    with running_sandbox(tmp_path_factory.mktemp("failing-sandbox"), SCENARIO, SCALE) as handle:
        yield handle


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sandbox: SandboxHandle, webhook: WebhookReceiver) -> Iterator[tuple[PrefectStack, BlockNames]]:
    with deployed_stack(tmp_path_factory.mktemp("prefect"), sandbox, team_webhook=webhook) as deployed:
        yield deployed


def _status(prefect: PrefectStack, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``m365-onboard status --json`` as the team runs it, by tenant."""
    return {row["tenant_id"]: row for row in json.loads(m365_onboard(prefect, env, "status", "--json").stdout)}


@pytest.mark.timeout(900)
def test_each_failure_branch_fails_the_run_and_tells_the_team_which_step_and_why(
    stack: tuple[PrefectStack, BlockNames], sandbox: SandboxHandle, webhook: WebhookReceiver
) -> None:
    prefect, blocks = stack
    env = worker_env(sandbox, SCALE, {"M365_ONBOARD_WAITS__SUSPEND_FROM_S": str(10 * 24 * 3600), **SHORT_WAITS})  # in-process pauses
    with temporary_settings({PREFECT_API_URL: prefect.api_url}):
        WorkbenchCredentials(api_key=sandbox.workbench_key(ANALYST_KEY)).save("workbench-analyst")
        prefect.start_worker(env)
        runs = {tenant: onboard(tenant, name, blocks if tenant != REFUSED else blocks.model_copy(update={"workbench": "workbench-analyst"}),
                                modes={"cross_tenant_access": "guide"} if tenant == GUIDE else None)
                for tenant, name in NAMES.items()}
        final = wait_until_final(list(runs.values()), timeout_s=600)
        history = {tenant: states(run) for tenant, run in runs.items()}
        status = _status(prefect, env)
        deadline = time.monotonic() + 60  # the "run failed" automation acts within seconds of each Failed state
        while len([m for m in webhook.messages if m["subject"].endswith(" Failed")]) < len(NAMES) and time.monotonic() < deadline:
            time.sleep(1)

    assert {NAMES[t]: final[r] for t, r in runs.items()} == {name: "Failed" for name in NAMES.values()}, history
    shown = {NAMES[t]: (status[t]["current_step"], status[t]["step_state"]) for t in NAMES}
    assert shown == {NAMES[t]: (step, "failed") for t, (step, _) in EXPECTED.items()}, status
    for tenant, (_, reason) in EXPECTED.items():
        assert reason in (status[tenant]["detail"] or ""), (NAMES[tenant], status[tenant])
        told = [m for m in webhook.messages if m["subject"] == f"Onboarding run onboard-{NAMES[tenant]} Failed"]
        assert len(told) == 1 and reason in told[0]["body"], (NAMES[tenant], [m["subject"] for m in webhook.messages])

    # What the failure prevented: nothing written in a tenant that does not exist, no device where Workbench refused it,
    # and no partner entry the customer was to add in guide mode; the other steps of those runs did what they could.
    written = [f"{r['service']} {r['method']} {r['path']} {r['status']}" for r in sandbox.request_log(tenant=UNKNOWN)
               if r["method"] != "GET" and r["service"] != "login"]
    assert written == [], [f"{r['service']} {r['method']} {r['path']} {r['status']}" for r in sandbox.request_log(tenant=UNKNOWN)]
    assert devices(sandbox, REFUSED) == []
    assert sandbox.tenant_state(GUIDE)["directory"]["partners"] == []
    assert len(devices(sandbox, GUIDE)) == 1
