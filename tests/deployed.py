"""What the end-to-end tests share: deployed runs on a real server and worker, against a sandbox.

A Prefect server with the project deployed as the team deploys it (``deploy``: work pool, blocks,
shared result storage with JSON results, deployments, automations), the workers' environment, credential blocks saved as the team saves them, runs started as
``m365-onboard onboard`` starts them, and what a person checks afterwards: each run's state
history, the tenant's step events, and the objects in the tenant and in Workbench.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks.credentials import ProviderAppCredentials, WorkbenchCredentials
from clients.http import VerifiedSession
from core.dispatch import sync_result
from core.requests import BlockNames
from core.settings import NotificationSettings, OnboardingSettings, RecoverySettings, ResultSettings
from m365_onboarding.deploy import credentials_from_sandbox, deploy
from tests.prefect_harness import PROJECT, PrefectStack, start_prefect
from tests.sandbox_harness import SandboxHandle, sandbox_env, start_sandbox
from tests.support import present
from tests.webhook_receiver import WebhookReceiver

ORG = "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d"
HEARTBEAT_S = 30  # the shortest Prefect allows: a killed run is marked Crashed 90 s after its last heartbeat
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@contextmanager
def deployed_stack(folder: Path, sandbox: SandboxHandle, restart_again_after_s: int = 600,
                   team_webhook: WebhookReceiver | None = None) -> Iterator[tuple[PrefectStack, BlockNames]]:
    """A Prefect server with everything ``deploy`` registers; yields it and the credential blocks' names.

    With ``team_webhook``, the team's channel is a custom-webhook block posting to its ``team``
    channel, and the team's notification automations are deployed with it.
    """
    stack = start_prefect(folder)
    suffix = uuid.uuid4().hex[:6]
    blocks = BlockNames(provider_app=f"app-{suffix}", workbench=f"wb-{suffix}")
    try:
        with temporary_settings({PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
            app, workbench = credentials_from_sandbox(sandbox.state_dir)
            recovery = RecoverySettings(heartbeat_s=HEARTBEAT_S, restart_again_after_s=restart_again_after_s)
            notifications = NotificationSettings(team_block=team_webhook.save_block("team") if team_webhook is not None else None)
            settings = OnboardingSettings(recovery=recovery, results=ResultSettings(local_path=folder / "results"), notifications=notifications)
            deploy(client, PROJECT, settings, blocks, app, workbench, env=stack.env())
        yield stack, blocks
    finally:
        stack.stop()


def worker_env(sandbox: SandboxHandle, scale: float, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A worker's environment for the sandbox on compressed time: every pause releases the worker."""
    env = sandbox_env(sandbox) | {
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
        "M365_ONBOARD_RECOVERY__HEARTBEAT_S": str(HEARTBEAT_S),  # crash recovery listens 1.5 of these before a restart
        "M365_ONBOARD_WAITS__TIME_SCALE": str(scale),
        "M365_ONBOARD_WAITS__SUSPEND_FROM_S": "0",  # every pause releases the worker, as long waits do in production
        "M365_ONBOARD_TIMING__CONSISTENCY_INTERVAL_S": "0.1",
        "M365_ONBOARD_TIMING__CONSISTENCY_DEADLINE_S": "30",
    }
    return env | (extra or {})


def save_blocks(sandbox: SandboxHandle) -> BlockNames:
    """The sandbox's app and Workbench credentials saved as blocks, under names of their own."""
    suffix = uuid.uuid4().hex[:6]
    blocks = BlockNames(provider_app=f"app-{suffix}", workbench=f"wb-{suffix}")
    ProviderAppCredentials(client_id=sandbox.client_id, client_secret=sandbox.app_secret()).save(blocks.provider_app)
    WorkbenchCredentials(api_key=sandbox.workbench_key()).save(blocks.workbench)
    return blocks


def onboard(tenant: str, name: str, blocks: BlockNames, email: str = "admin@customer.example",
            modes: dict[str, str] | None = None) -> uuid.UUID:
    """Start one onboarding run of the deployment, as ``m365-onboard onboard`` does (``modes``: its --<step> flags); returns its id."""
    request = {"tenant_id": tenant, "organization_name": name, "provider_org_id": ORG, "customer_contact_email": email,
               "blocks": blocks.model_dump(), "modes": modes or {}}
    return sync_result(run_deployment("onboard-tenant/onboard-tenant", parameters={"request": request}, timeout=0)).id


def devices(sandbox: SandboxHandle, tenant: str) -> list[dict[str, Any]]:
    """The tenant's Workbench devices that are not deleted."""
    return [d for d in sandbox.admin("GET", "workbench").json()["security_devices"] if d["tenant_id"] == tenant and d["deleted_at"] is None]


def states(run_id: uuid.UUID) -> list[str]:
    """The names of a run's states, oldest first, as its history in the UI lists them."""
    with get_client(sync_client=True) as client:
        return [present(s.name) for s in client.read_flow_run_states(run_id)]


def wait_until_final(run_ids: list[uuid.UUID], timeout_s: float, poll_s: float = 2.0) -> dict[uuid.UUID, str]:
    """Wait until every run is in a final state that is not Crashed (crash recovery restarts those)."""
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            found = {run_id: client.read_flow_run(run_id).state for run_id in run_ids}
            if all(s is not None and s.type.value in TERMINAL and s.name != "Crashed" for s in found.values()):
                return {run_id: present(present(s).name) for run_id, s in found.items()}
            if time.monotonic() > deadline:
                return {run_id: (s.name if s else None) or "no state" for run_id, s in found.items()}
            time.sleep(poll_s)


def one_of_each(sandbox: SandboxHandle, tenant: str) -> dict[str, int]:
    """How many SOC guests, Global Reader assignments of the guest, partner entries and devices the tenant has."""
    directory = sandbox.tenant_state(tenant)["directory"]
    guests = [u["id"] for u in directory["users"]]
    return {
        "guests": len(guests),
        "role_assignments": len([a for a in directory["roleAssignments"] if a["principalId"] in guests]),
        "partners": len(directory["partners"]),
        "devices": len(devices(sandbox, tenant)),
    }


@contextmanager
def running_sandbox(folder: Path, scenario: dict[str, Any], scale: float) -> Iterator[SandboxHandle]:
    """The sandbox with this scenario on compressed time, stopped afterwards."""
    handle = start_sandbox(folder, scenario, time_scale=scale)
    try:
        yield handle
    finally:
        handle.stop()


def m365_onboard(prefect: PrefectStack, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``m365-onboard …`` as a person runs it, against this stack; checked to have succeeded."""
    result = subprocess.run([sys.executable, "-m", "m365_onboarding.cli", *args], cwd=PROJECT, env=prefect.env(env),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"m365-onboard {args[0]} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def accept_consent(sandbox: SandboxHandle, link: str) -> None:
    """As the customer's Global Administrator: open the admin-consent link and accept."""
    url = urlsplit(link)
    answer = VerifiedSession(sandbox.ca_bundle).post(f"{url.scheme}://{url.netloc}{url.path}", data=dict(parse_qsl(url.query)) | {"decision": "accept"},
                                                     timeout=30, allow_redirects=False)
    assert answer.status_code in (200, 302, 303), answer.text[:300]
