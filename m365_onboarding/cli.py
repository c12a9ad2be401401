"""The onboarding team's command line: ``m365-onboard``.

Exit codes: 0 success; 1 the command ran and failed (a tenant error, a service that does not
answer, a run that could not be started); 2 bad input (a flag, a file, a CSV row, a setting);
130 interrupted. Errors are one line on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from m365_onboarding.paths import state_dir as default_state_dir

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Onboard Microsoft 365 tenants to an MDR provider.")
err = Console(stderr=True, soft_wrap=True)  # never wrap: error lines get copied and grepped
out = Console(soft_wrap=True)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEBUG = {"on": False}


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")] = False) -> None:
    """Onboard Microsoft 365 tenants to an MDR provider, tenant by tenant, with Prefect."""
    DEBUG["on"] = debug


def fail(message: str, code: int = EXIT_FAILED, exc: BaseException | None = None) -> typer.Exit:
    """Print one error line (and the traceback with ``--debug``); returns the exit to raise."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    if DEBUG["on"] and exc is not None:
        err.print_exception(show_locals=False)
    return typer.Exit(code)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def with_mode_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` a ``--<step>`` option per step whose mode the team may force (the fields of StepModes).

    Typer reads the options from the signature, so they are added to it; ``command`` takes them as ``**modes``.
    """
    from core.requests import StepModes

    signature = inspect.signature(command, eval_str=True)  # the annotations are strings here (PEP 563)
    options = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=Annotated[str | None, typer.Option(f"--{name.replace('_', '-')}", help=field.description)])
        for name, field in StepModes.model_fields.items()
    ]
    kept = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = signature.replace(parameters=[*kept, *options])  # type: ignore[attr-defined]
    return command


def _api_error(exc: BaseException) -> str:
    """One line for a failed Prefect API call; names the server when it could not be reached at all."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    if isinstance(exc, httpx.TransportError):
        return f"the Prefect API at {PREFECT_API_URL.value()} does not answer ({_one_line(exc)}); is the server up and PREFECT_API_URL right?"
    return _one_line(exc)


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(help="First of five consecutive ports (login, graph, exchange, management, workbench).")] = 8443,
    scenario: Annotated[Path | None, typer.Option(help="Scenario YAML file (default: the built-in default scenario).")] = None,
    time_scale: Annotated[float | None, typer.Option("--time-scale", help="Scenario seconds per real second, e.g. 3600 makes an hour a second.")] = None,
    state_dir: Annotated[Path | None, typer.Option(
        help="State folder for the CA, credentials and manifest (default: $M365_ONBOARD_STATE_DIR or ./.state).")] = None,
    write_env: Annotated[Path | None, typer.Option(help="Also write the endpoints as M365_ONBOARD_* settings to this .env file.")] = None,
) -> None:
    """Run the local Microsoft 365 and Workbench sandbox over HTTPS on 127.0.0.1."""
    from sandbox.core.scenario import ScenarioError, load_scenario
    from sandbox.server import SandboxServer, SandboxStartError, write_env_file, write_manifest

    if time_scale is not None and time_scale <= 0:
        raise fail(f"--time-scale must be positive, got {time_scale}", EXIT_BAD_INPUT)
    try:
        loaded = load_scenario(scenario)
        folder = (state_dir or default_state_dir() / "sandbox").resolve()
        server = SandboxServer(loaded, folder, first_port=port, time_scale=time_scale)
    except (ScenarioError, SandboxStartError) as exc:
        raise fail(str(exc), EXIT_BAD_INPUT, exc) from exc

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
        raise fail(str(exc), EXIT_FAILED, exc) from exc
    except KeyboardInterrupt as exc:
        raise typer.Exit(EXIT_INTERRUPTED) from exc


@app.command()
def automations(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change, change nothing.")] = False,
) -> None:
    """Create or update the onboarding's Prefect automations (crash recovery); idempotent."""
    from prefect.client.orchestration import get_client
    from pydantic import ValidationError

    from automations.apply import NotOnServer, apply_automations
    from core.settings import OnboardingSettings

    try:
        settings = OnboardingSettings()
    except ValidationError as exc:
        raise fail(f"settings: {exc.errors()[0]['msg']}", EXIT_BAD_INPUT, exc) from exc
    try:
        with get_client(sync_client=True) as client:
            report = apply_automations(client, settings, dry_run=dry_run)
    except NotOnServer as exc:
        raise fail(str(exc), EXIT_FAILED, exc) from exc
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

    from core.errors import OnboardingError
    from core.requests import BlockNames, TenantRequest
    from tasks.dry_run import plan_tenant

    try:
        request = TenantRequest(tenant_id=tenant_id, organization_name=organization, provider_org_id=provider_org)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise fail(f"{first['loc'][0]}: {first['msg']}", EXIT_BAD_INPUT, exc) from exc
    try:
        result = plan_tenant(request, BlockNames(provider_app=provider_app_block, workbench=workbench_block))
    except OnboardingError as exc:
        failure = fail(exc.message.splitlines()[0], EXIT_FAILED, exc)  # the next action follows on its own line
        if exc.next_action:
            err.print(f"next: {exc.next_action}", highlight=False)
        raise failure from exc
    except ValueError as exc:  # a block that is not saved
        raise fail(str(exc), EXIT_BAD_INPUT, exc) from exc
    except Exception as exc:  # e.g. the Prefect API holding the blocks does not answer: one line, not a traceback
        raise fail(f"cannot plan: {_one_line(exc)}", EXIT_FAILED, exc) from exc
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

    from core.settings import OnboardingSettings
    from m365_onboarding.status import tenant_statuses

    try:
        ui_url = OnboardingSettings().notifications.ui_url or PREFECT_UI_URL.value()
        with get_client(sync_client=True) as client:
            rows = tenant_statuses(client, ui_url)
    except Exception as exc:  # the server is down or unreachable: one line, not a traceback
        raise fail(f"cannot read the Prefect API: {_api_error(exc)}", EXIT_FAILED, exc) from exc
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


@app.command()
def deploy(
    sandbox_state: Annotated[Path | None, typer.Option("--from-sandbox", help="Take the credentials from a sandbox's state folder (its sandbox.json).")] = None,
    client_id: Annotated[str | None, typer.Option(help="Application (client) id of the provider's multi-tenant app.")] = None,
    certificate: Annotated[Path | None, typer.Option(help="PEM certificate registered on the app (preferred over a secret).")] = None,
    private_key: Annotated[Path | None, typer.Option(help="PEM private key of that certificate.")] = None,
    provider_app_block: Annotated[str, typer.Option(help="Name of the ProviderAppCredentials block.")] = "m365-provider-app",
    workbench_block: Annotated[str, typer.Option(help="Name of the WorkbenchCredentials block.")] = "expel-workbench",
) -> None:
    """Register the work pool, credential blocks, deployments (prefect.yaml) and automations; idempotent.

    Secrets come from the environment, never from flags: M365_ONBOARD_APP_CLIENT_SECRET (when no
    certificate is given) and M365_ONBOARD_WORKBENCH_API_KEY. A block given no credential is kept.
    """
    import os

    from prefect.client.orchestration import get_client
    from pydantic import ValidationError

    from automations.apply import NotOnServer
    from core.requests import BlockNames
    from core.settings import OnboardingSettings
    from m365_onboarding.deploy import DeployError, credentials_from_environment, credentials_from_sandbox
    from m365_onboarding.deploy import deploy as deploy_all
    from m365_onboarding.local_stack import StackError, project_dir

    try:
        settings = OnboardingSettings()
        project = project_dir()
        app_credentials, workbench = (credentials_from_sandbox(sandbox_state.resolve()) if sandbox_state is not None
                                      else credentials_from_environment(os.environ, client_id, certificate, private_key))
    except ValidationError as exc:
        raise fail(f"settings: {exc.errors()[0]['msg']}", EXIT_BAD_INPUT, exc) from exc
    except (DeployError, StackError) as exc:
        raise fail(str(exc), EXIT_BAD_INPUT, exc) from exc
    try:
        with get_client(sync_client=True) as client:
            report = deploy_all(client, project, settings, BlockNames(provider_app=provider_app_block, workbench=workbench_block), app_credentials, workbench)
    except (DeployError, NotOnServer) as exc:
        raise fail(str(exc), EXIT_FAILED, exc) from exc
    except Exception as exc:  # the Prefect API does not answer
        raise fail(f"cannot deploy: {_api_error(exc)}", EXIT_FAILED, exc) from exc
    for kind, name, verb in report.lines:
        out.print(f"{verb:<10} {kind:<11} {name}", highlight=False)


@app.command()
@with_mode_options
def onboard(
    csv_file: Annotated[Path | None, typer.Option("--csv", help="One tenant per row; columns as the flags, with underscores (tenant_id, ...).")] = None,
    tenant_id: Annotated[str | None, typer.Option("--tenant-id", help="The customer's Directory (tenant) ID.")] = None,
    organization: Annotated[str | None, typer.Option("--organization", help="The organization name as Entra shows it.")] = None,
    provider_org: Annotated[str | None, typer.Option("--provider-org", help="The customer's organization GUID at the provider (Workbench).")] = None,
    contact: Annotated[str | None, typer.Option("--contact", help="The customer's admin: receives the consent link and reminders.")] = None,
    provider_app_block: Annotated[str | None, typer.Option(help="Saved ProviderAppCredentials block (default m365-provider-app).")] = None,
    workbench_block: Annotated[str | None, typer.Option(help="Saved WorkbenchCredentials block (default expel-workbench).")] = None,
    deployment: Annotated[str, typer.Option(help="The onboarding deployment.")] = "onboard-tenant/onboard-tenant",
    **modes: str | None,  # --<step> per step whose mode may be forced: see with_mode_options
) -> None:
    """Start an onboarding run for one tenant (flags) or for every row of a CSV file; prints the run links.

    Every row is checked before any run starts; all problems are listed at once.
    """
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_UI_URL
    from pydantic import ValidationError

    from core.settings import OnboardingSettings
    from m365_onboarding.onboard import InvalidRequests, build_request, describe, requests_from_csv, start_runs

    flags = {"tenant_id": tenant_id, "organization_name": organization, "provider_org_id": provider_org, "customer_contact_email": contact,
             **modes, "provider_app_block": provider_app_block, "workbench_block": workbench_block}
    tenant_flags = [k for k in ("tenant_id", "organization_name", "provider_org_id", "customer_contact_email") if flags[k] is not None]
    if (csv_file is None) == (not tenant_flags):
        raise fail("give either --csv FILE or the tenant's flags (--tenant-id, --organization, --provider-org, --contact)", EXIT_BAD_INPUT)
    try:
        if csv_file is not None:
            requests = requests_from_csv(csv_file)
        else:
            flag_names = {"organization_name": "organization", "provider_org_id": "provider-org", "customer_contact_email": "contact"}
            missing = [f"--{flag_names.get(k, k.replace('_', '-'))}" for k in flag_names.keys() | {"tenant_id"} if flags[k] is None]
            if missing:
                raise InvalidRequests([f"missing {', '.join(sorted(missing))}"])
            try:
                requests = [build_request(flags)]
            except ValidationError as exc:  # name the flags the user typed, not the model's fields
                flag_of = {"tenant_id": "--tenant-id", **{k: f"--{v}" for k, v in flag_names.items()}, **{k: f"--{k.replace('_', '-')}" for k in modes}}
                raise InvalidRequests(describe(exc, flag_of)) from exc
    except InvalidRequests as exc:
        for problem in exc.problems:
            err.print(f"[red]error:[/red] {problem}", highlight=False)
        err.print(f"nothing started: {len(exc.problems)} problem(s)", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    try:
        ui_url = OnboardingSettings().notifications.ui_url or PREFECT_UI_URL.value()
        started, failed = start_runs(requests, deployment, ui_url)
    except ObjectNotFound as exc:
        raise fail(f"deployment {deployment!r} not found: run `m365-onboard deploy` first", EXIT_FAILED, exc) from exc
    except Exception as exc:
        raise fail(f"cannot start the runs: {_api_error(exc)}", EXIT_FAILED, exc) from exc
    for run in started:
        out.print(f"started {run.run_name:<30} {run.tenant_id}  {run.link or run.run_id}", highlight=False)
    for request, why in failed:
        err.print(f"[red]error:[/red] not started: {request.organization_name} ({request.tenant_id}): {why}", highlight=False)
    if failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def demo(
    keep_running: Annotated[bool, typer.Option(
        "--keep-running", help="Keep the Prefect UI, sandbox and worker up after the summary (Ctrl-C stops them).")] = False,
    time_scale: Annotated[float, typer.Option("--time-scale", help="Scenario seconds per real second.")] = 3600,
    timeout: Annotated[float, typer.Option(help="Give up watching after this many seconds.")] = 900,
    state_dir: Annotated[Path | None, typer.Option(
        help="State folder (default: $M365_ONBOARD_STATE_DIR or ./.state); the demo uses its demo/ subfolder.")] = None,
) -> None:
    """Onboard the sandbox's sample tenants end to end: Prefect server, sandbox, worker, deployments, live progress."""
    from m365_onboarding.demo import run_demo
    from m365_onboarding.local_stack import StackError, stop_on_terminate

    for option, value in (("--time-scale", time_scale), ("--timeout", timeout)):
        if value <= 0:
            raise fail(f"{option} must be positive, got {value:g}; nothing was started", EXIT_BAD_INPUT)
    folder = ((state_dir or default_state_dir()) / "demo").resolve()
    stop_on_terminate()  # `kill`, a closed terminal or Ctrl-C: stop what the demo started
    try:
        outcomes = run_demo(folder, out, time_scale=time_scale, timeout_s=timeout, keep_running=keep_running)
    except StackError as exc:
        raise fail(str(exc), EXIT_FAILED, exc) from exc
    except KeyboardInterrupt as exc:
        raise fail("interrupted; everything the demo started was stopped", EXIT_INTERRUPTED) from exc
    if any(o.state == "Scheduled" for o in outcomes):
        raise fail("some runs never started: see the worker's log in " + str(folder / "logs"), EXIT_FAILED)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # anything not handled by a command: one line, the traceback only with --debug
        if "--debug" in sys.argv[1:]:
            raise
        err.print(f"[red]error:[/red] {_one_line(exc)} (run again with --debug for the traceback)", highlight=False)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
