"""The onboarding team's command line: ``m365-onboard``.

Exit codes: 0 success; 1 the command ran and failed; 2 bad input (a flag, a file); 130 interrupted.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from m365_onboarding.paths import state_dir as default_state_dir

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Onboard Microsoft 365 tenants to an MDR provider.")
err = Console(stderr=True, soft_wrap=True)  # never wrap: error lines get copied and grepped
out = Console(soft_wrap=True)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


@app.callback()
def _root() -> None:
    """Onboard Microsoft 365 tenants to an MDR provider, tenant by tenant, with Prefect."""


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(help="First of five consecutive ports (login, graph, exchange, management, workbench).")] = 8443,
    scenario: Annotated[Path | None, typer.Option(help="Scenario YAML file (default: the built-in default scenario).")] = None,
    time_scale: Annotated[float | None, typer.Option("--time-scale", help="Scenario seconds per real second, e.g. 3600 makes an hour a second.")] = None,
    state_dir: Annotated[Path | None, typer.Option(help="State folder for the CA, credentials and manifest (default: $M365_ONBOARD_STATE_DIR or ./.state).")] = None,
    write_env: Annotated[Path | None, typer.Option(help="Also write the endpoints as M365_ONBOARD_* settings to this .env file.")] = None,
) -> None:
    """Run the local Microsoft 365 and Workbench sandbox over HTTPS on 127.0.0.1."""
    from sandbox.core.scenario import ScenarioError, load_scenario
    from sandbox.server import SandboxServer, SandboxStartError, write_env_file, write_manifest

    if time_scale is not None and time_scale <= 0:
        err.print(f"[red]error:[/red] --time-scale must be positive, got {time_scale}")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        loaded = load_scenario(scenario)
        folder = (state_dir or default_state_dir() / "sandbox").resolve()
        server = SandboxServer(loaded, folder, first_port=port, time_scale=time_scale)
    except (ScenarioError, SandboxStartError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None

    def ready(srv: SandboxServer) -> None:
        manifest = write_manifest(folder, srv.endpoints, srv.world)
        if write_env:
            write_env_file(write_env, srv.endpoints)
        out.print(f"sandbox ready (time scale {srv.world.clock.time_scale:g}, {len(srv.world.tenants)} tenant(s))", highlight=False)
        for name, url in srv.endpoints.base_urls.items():
            out.print(f"  {name:<20} {url}", highlight=False)
        out.print(f"  {'CA bundle':<20} {srv.endpoints.ca_bundle}", highlight=False)
        out.print(f"  {'manifest':<20} {manifest}", highlight=False)
        out.print(f"  {'admin API':<20} {srv.endpoints.base_urls['login']}/_sandbox/", highlight=False)
        if write_env:
            out.print(f"  {'settings written to':<20} {write_env}", highlight=False)
        sys.stdout.flush()

    try:
        asyncio.run(server.serve(on_ready=ready))
    except SandboxStartError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command()
def automations(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change, change nothing.")] = False,
) -> None:
    """Create or update the onboarding's Prefect automations (crash recovery); idempotent."""
    from prefect.client.orchestration import get_client
    from pydantic import ValidationError

    from automations.apply import NotOnServer, apply_automations
    from m365_onboarding.settings import OnboardingSettings

    try:
        settings = OnboardingSettings()
    except ValidationError as exc:
        err.print(f"[red]error:[/red] settings: {exc.errors()[0]['msg']}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    try:
        with get_client(sync_client=True) as client:
            report = apply_automations(client, settings, dry_run=dry_run)
    except NotOnServer as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    suffix = " (dry run: nothing changed)" if dry_run else ""
    for verb in ("created", "updated", "deleted", "unchanged"):
        for name in getattr(report, verb):
            out.print(f"{verb:<10} {name}{suffix if verb != 'unchanged' else ''}", highlight=False)


@app.command()
def plan(
    tenant_id: Annotated[str, typer.Option("--tenant-id", help="The customer's Directory (tenant) ID.")],
    organization: Annotated[str, typer.Option("--organization", help="The organization name as Entra shows it.")],
    provider_org: Annotated[str, typer.Option("--provider-org", help="The customer's organization GUID at the provider (Workbench).")],
    provider_app_block: Annotated[str, typer.Option(help="Saved ProviderAppCredentials block.")] = "m365-provider-app",
    workbench_block: Annotated[str, typer.Option(help="Saved WorkbenchCredentials block.")] = "expel-workbench",
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Dry run for one tenant: what each step would change now, touching nothing."""
    from pydantic import ValidationError
    from rich.table import Table

    from clients.errors import OnboardingError
    from tasks.dry_run import plan_tenant
    from tasks.runtime import BlockNames, TenantRequest

    try:
        request = TenantRequest(tenant_id=tenant_id, organization_name=organization, provider_org_id=provider_org)
    except ValidationError as exc:
        first = exc.errors()[0]
        err.print(f"[red]error:[/red] {first['loc'][0]}: {first['msg']}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    try:
        result = plan_tenant(request, BlockNames(provider_app=provider_app_block, workbench=workbench_block))
    except OnboardingError as exc:
        err.print(f"[red]error:[/red] {exc.message.splitlines()[0]}", highlight=False)  # the next action follows on its own line
        if exc.next_action:
            err.print(f"next: {exc.next_action}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    except ValueError as exc:  # a block that is not saved
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except Exception as exc:  # e.g. the Prefect API holding the blocks does not answer: one line, not a traceback
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        err.print(f"[red]error:[/red] cannot plan: {type(exc).__name__}: {first_line}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    if as_json:
        out.print_json(result.model_dump_json())
        return
    table = Table(title=f"Plan for {result.tenant.display_name or organization} ({tenant_id}): nothing is changed")
    for column in ("step", "action", "changes"):
        table.add_column(column)
    for step in result.steps:
        table.add_row(step.step, step.action, "\n".join(step.changes) or step.note or "-")
    out.print(table)


def _ago(moment: object) -> str:
    from datetime import UTC, datetime

    if not isinstance(moment, datetime):
        return "-"
    minutes = int((datetime.now(UTC) - moment).total_seconds() // 60)
    return f"{minutes // 1440}d {minutes % 1440 // 60}h ago" if minutes >= 1440 else f"{minutes // 60}h {minutes % 60}m ago"


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per tenant, in a list.")] = False,
) -> None:
    """Every tenant's onboarding: run state, current step, what it waits for and since when, stalled or not."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_UI_URL
    from rich.table import Table

    from m365_onboarding.settings import OnboardingSettings
    from m365_onboarding.status import tenant_statuses

    try:
        ui_url = OnboardingSettings().notifications.ui_url or PREFECT_UI_URL.value()
        with get_client(sync_client=True) as client:
            rows = tenant_statuses(client, ui_url)
    except Exception as exc:  # the server is down or unreachable: one line, not a traceback
        err.print(f"[red]error:[/red] cannot read the Prefect API ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    if as_json:
        out.print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2), highlight=False)
        return
    table = Table(title=f"{len(rows)} tenant(s)")
    for column in ("organization", "run", "state", "current step", "waiting for", "since", "stalled"):
        table.add_column(column)
    for r in rows:
        step = f"{r.current_step} ({r.step_state})" if r.current_step else "all steps done"
        table.add_row(r.organization, r.run_name, r.run_state, step, r.waiting_for or "-", _ago(r.since), "[red]yes[/red]" if r.stalled else "no")
    out.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
