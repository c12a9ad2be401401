"""``m365-onboard demo``: the whole thing on one machine, in a few minutes.

Starts a Prefect server (SQLite under ``<state>/demo/prefect``) unless one is configured, the sandbox
with the default scenario on compressed time, deploys the project, starts a process worker, onboards
the scenario's sample tenants, shows their progress live, and ends with each tenant's outcome. The
demo ends when every run has finished or waits, stalled, on its customer (the tenant whose admin
never consents); runs still waiting then are cancelled, and everything started is stopped, unless
``--keep-running``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import State, StateType
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings
from prefect.states import Cancelled, Cancelling
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from core.requests import BlockNames, OnboardingRequest
from core.settings import OnboardingSettings
from m365_onboarding.deploy import credentials_from_sandbox, deploy
from m365_onboarding.local_stack import LocalStack, StackError, project_dir, server_healthy, start_prefect_server, start_sandbox, start_worker
from m365_onboarding.onboard import StartedRun, start_runs
from m365_onboarding.status import TenantStatus, tenant_statuses
from m365_onboarding.terminal import literal
from sandbox.core.scenario import load_scenario
from tasks.catalogue import CATALOGUE

DEMO_BLOCKS = BlockNames(provider_app="sandbox-provider-app", workbench="sandbox-workbench")  # never a real tenant's blocks
HOUR = 3600
CELL = {"completed": ("done", "green"), "planned": ("planned", "blue"), "started": ("running", "cyan"), "waiting": ("waiting", "yellow"),
        "stalled": ("STALLED", "bold red"), "failed": ("FAILED", "bold red"), "retried": ("retried", "magenta")}
SETTLE_S = 15  # how long the last table waits for a finished run's last step events
ACTIVE = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING]


def demo_wait_settings(time_scale: float) -> dict[str, str]:
    """Waits for the demo: only the alert window (days) suspends, everything shorter polls in-process.

    At the default scale an hour lasts a second, so production's 5-minute suspend threshold would
    suspend and wake a run every second; the demo shows each mechanism once instead.
    """
    return {
        "M365_ONBOARD_WAITS__TIME_SCALE": str(time_scale),
        "M365_ONBOARD_WAITS__SUSPEND_FROM_S": str(6 * HOUR),
        "M365_ONBOARD_WAITS__ADMIN_CONSENT__INTERVAL_S": str(3 * HOUR),
        "M365_ONBOARD_WAITS__FIRST_ALERTS__INTERVAL_S": str(24 * HOUR),
        "M365_ONBOARD_TIMING__CONSISTENCY_INTERVAL_S": "0.2",
    }


@dataclass
class Outcome:
    organization: str
    state: str
    summary: str
    link: str | None


def sample_requests(scenario: Path | None = None) -> list[OnboardingRequest]:
    """One request per tenant of the scenario, for the scenario's first Workbench organization."""
    loaded = load_scenario(scenario)
    provider_org = loaded.workbench.organizations[0].id
    return [OnboardingRequest(tenant_id=t.id, organization_name=t.display_name, provider_org_id=provider_org,
                              customer_contact_email=f"admin@{t.initial_domain}", blocks=DEMO_BLOCKS) for t in loaded.tenants]


def _cell(state: str | None) -> Text:
    if state is None:
        return Text("-", style="dim")
    label, style = CELL.get(state, (state, ""))
    return literal(label, style=style)  # an unknown state is the events API's text


def progress_table(runs: list[StartedRun], statuses: dict[UUID, TenantStatus], elapsed_s: float) -> Table:
    """One column per tenant, one row per step of the guide: fits a terminal for the demo's few tenants."""
    table = Table(title=f"Onboarding {len(runs)} sandbox tenant(s) · {elapsed_s:.0f}s", title_justify="left")
    table.add_column("step")
    for run in runs:
        table.add_column(literal(run.organization))
    table.add_row("flow run", *(literal(statuses[r.run_id].run_state if r.run_id in statuses else "Scheduled", style="bold") for r in runs))
    for line in CATALOGUE.lines():  # the short labels, with the guide's step numbers; the full ones are in the UI checklist
        table.add_row(line.numbered(line.label),
                      *(_cell(statuses[r.run_id].steps.get(line.name) if r.run_id in statuses else None) for r in runs))
    return table


def waits_on_customer(status: TenantStatus) -> bool:
    """Stalled on a step only the customer's admin can end: the demo has shown all it will."""
    return status.stalled and status.on_customer and status.run_state not in ("Completed", "Failed", "Crashed", "Cancelled")


def finished(status: TenantStatus | None) -> bool:
    return status is not None and (status.run_state in ("Completed", "Failed", "Crashed", "Cancelled") or waits_on_customer(status))


def settled(status: TenantStatus | None) -> bool:
    """A Completed run's last step events are stored a moment after its state: until then the table lags."""
    return status is None or status.run_state != "Completed" or status.current_step is None


def _report_outcome(client: SyncPrefectClient, tenant_id: str) -> str | None:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"report-{tenant_id}"])), limit=1)
    data = artifacts[0].data if artifacts else None
    for line in (data if isinstance(data, str) else "").splitlines():
        if line.startswith("**Outcome:**"):
            return line.removeprefix("**Outcome:**").strip()
    return None


def outcome_of(client: SyncPrefectClient, run: StartedRun, status: TenantStatus | None) -> Outcome:
    if status is None:
        return Outcome(run.organization, "Scheduled", "never started (no worker picked it up)", run.link)
    if status.run_state == "Completed":
        return Outcome(run.organization, status.run_state, _report_outcome(client, run.tenant_id) or "onboarded", run.link)
    if waits_on_customer(status):
        return Outcome(run.organization, status.run_state, f"stalled on {status.current_step}: waiting for {status.waiting_for}", run.link)
    state = client.read_flow_run(run.run_id).state
    message = (state.message or "").splitlines()[0] if state and state.message else ""
    where = f"{status.current_step}: " if status.current_step else ""
    return Outcome(run.organization, status.run_state, f"{where}{status.detail or message or status.step_state or ''}", run.link)


def _cancel_unfinished(client: SyncPrefectClient, runs: list[StartedRun], console: Console) -> None:
    """Cancel the demo's runs that are still active; a suspended run holds no process and is cancelled at once."""
    active = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.run_id for r in runs]),
                                                                 state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE))))
    for run in active:
        running = run.state is not None and run.state.type in (StateType.RUNNING, StateType.PENDING)
        state: State = Cancelling(message="the demo ended") if running else Cancelled(message="the demo ended")
        client.set_flow_run_state(run.id, state, force=True)
        console.print(literal(f"cancelled {run.name}: the demo ended while it waited"), highlight=False)
    deadline = time.monotonic() + 60  # the worker stops a cancelling run's process
    while active and time.monotonic() < deadline:
        ids = [r.id for r in active]
        still = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids),
                                                                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CANCELLING]))))
        if not still:
            break
        time.sleep(1)


def _leftovers(client: SyncPrefectClient, requests: list[OnboardingRequest], console: Console) -> None:
    """Cancel active runs for the sample tenants left by an earlier, interrupted demo (one run per tenant is allowed)."""
    tenants = {r.tenant_id for r in requests}
    active = client.read_flow_runs(flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE))))
    for run in active:
        if (run.parameters.get("request") or {}).get("tenant_id") in tenants:
            client.set_flow_run_state(run.id, Cancelled(message="left by an earlier demo"), force=True)
            console.print(literal(f"cancelled {run.name}, left active by an earlier demo"), highlight=False)


@contextmanager
def _prefect_api(stack: LocalStack, console: Console) -> Iterator[str]:
    configured = PREFECT_API_URL.value()
    if configured:
        if not server_healthy(configured):
            raise StackError(f"the configured Prefect API {configured} does not answer: start it, or unset PREFECT_API_URL to use an embedded server")
        console.print(literal(f"Prefect API: {configured} (configured)"), highlight=False)  # the environment's text
        stack.env["PREFECT_API_URL"] = configured
        yield configured
        return
    console.print(literal(f"starting a Prefect server (SQLite in {stack.state / 'prefect'}) ..."), highlight=False)  # a folder named [x]
    api_url = start_prefect_server(stack)
    with temporary_settings({PREFECT_API_URL: api_url, PREFECT_UI_URL: stack.env["PREFECT_UI_URL"]}):
        yield api_url


def run_demo(state: Path, console: Console, time_scale: float = 3600, timeout_s: float = 900, keep_running: bool = False) -> list[Outcome]:
    """Run the demo and return each tenant's outcome; everything started is stopped unless ``keep_running``."""
    stack = LocalStack(state)
    runs: list[StartedRun] = []
    try:
        with _prefect_api(stack, console):
            ui_url = stack.env.get("PREFECT_UI_URL") or PREFECT_UI_URL.value()
            console.print(f"starting the sandbox (default scenario, an hour of scenario time every {HOUR / time_scale:g}s) ...", highlight=False)
            _manifest, sandbox_env = start_sandbox(stack, time_scale)
            requests = sample_requests()
            console.print("deploying (work pool, credential blocks, deployments, automations) ...", highlight=False)
            # The demo has no team channel: stalls show in the table below instead of a chat message.
            logging.getLogger("automations.apply").setLevel(logging.ERROR)
            app, workbench = credentials_from_sandbox(state / "sandbox")
            with get_client(sync_client=True) as client:
                report = deploy(client, project_dir(), OnboardingSettings(_env_file=None), DEMO_BLOCKS, app, workbench, env=stack.env)
                for kind, name, verb in report.changed():
                    console.print(literal(f"  {verb:<8} {kind:<11} {name}"), highlight=False)
                _leftovers(client, requests, console)
            start_worker(stack, {**sandbox_env, **demo_wait_settings(time_scale)})
            runs, failed = start_runs(requests, "onboard-tenant/onboard-tenant", ui_url)
            for request, why in failed:
                console.print(Text.assemble(("not started", "red"), " ", literal(f"{request.organization_name}: {why}")), highlight=False)
            for run in runs:
                console.print(literal(f"{run.organization:<20} {run.link or run.run_id}"), highlight=False)
            outcomes = _watch(runs, ui_url, console, timeout_s)
            _print_summary(outcomes, console)
            if keep_running:
                console.print()
                console.print(literal(f"The Prefect UI stays up at {ui_url}; press Ctrl-C to stop the server, sandbox and worker."), highlight=False)
                _block_until_interrupted()
            else:
                with get_client(sync_client=True) as client:
                    _cancel_unfinished(client, runs, console)
            return outcomes
    finally:
        stack.stop()


def _watch(runs: list[StartedRun], ui_url: str | None, console: Console, timeout_s: float) -> list[Outcome]:
    started = time.monotonic()
    statuses: dict[UUID, TenantStatus] = {}
    ours = {r.run_id for r in runs}
    with get_client(sync_client=True) as client, Live(console=console, refresh_per_second=2, transient=False) as live:

        def refresh() -> dict[UUID, TenantStatus]:
            now = {s.run_id: s for s in tenant_statuses(client, ui_url) if s.run_id in ours}
            live.update(Group(progress_table(runs, now, time.monotonic() - started)))
            return now

        while True:
            statuses = refresh()
            if all(finished(statuses.get(r.run_id)) for r in runs) or time.monotonic() - started > timeout_s:
                break
            time.sleep(2)
        settle_until = time.monotonic() + SETTLE_S
        while not all(settled(statuses.get(r.run_id)) for r in runs) and time.monotonic() < settle_until:
            time.sleep(1)
            statuses = refresh()
        return [outcome_of(client, run, statuses.get(run.run_id)) for run in runs]


def _print_summary(outcomes: list[Outcome], console: Console) -> None:
    console.print("\nSummary", style="bold")
    for o in outcomes:
        console.print(literal(f"  {o.organization:<20} {o.state:<10} {o.summary}"), highlight=False)  # the summary is the server's
        if o.link:
            console.print(literal(f"  {'':<20} {o.link}"), highlight=False)


def _block_until_interrupted() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
