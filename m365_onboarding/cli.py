"""The onboarding team's command line: ``m365-onboard``.

Exit codes: 0 success; 1 the command ran and failed (a tenant error, a service that does not
answer, a run that could not be started); 2 bad input (a flag, a file, a CSV row, a setting);
130 interrupted. Errors are one line on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from typer._click import Context as ClickContext  # Typer vendors Click: its parser raises these, not the click package's
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

from core.requests import shown
from core.text import printable
from m365_onboarding.paths import state_dir as default_state_dir
from m365_onboarding.terminal import error_line, literal

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from core.requests import OnboardingRequest
    from core.settings import OnboardingSettings

err = Console(stderr=True, soft_wrap=True)  # never wrap: error lines get copied and grepped
out = Console(soft_wrap=True)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEBUG = {"on": False}
Model = TypeVar("Model")
DEPLOYMENT_NAME = re.compile(r"[^/\s]+/[^/\s]+")  # <flow name>/<deployment name>, as Prefect looks it up
# The flags of a tenant, by the request field (or CSV column) each fills; plus one --<step> per StepModes field.
TENANT_FLAGS = {"tenant_id": "--tenant-id", "organization_name": "--organization", "provider_org_id": "--provider-org",
                "customer_contact_email": "--contact", "provider_app_block": "--provider-app-block", "workbench_block": "--workbench-block"}
BLOCK_FLAGS = {"provider_app": "--provider-app-block", "workbench": "--workbench-block"}  # BlockNames' fields


@contextmanager
def _usage_errors_as_one_line() -> Iterator[None]:
    """Click's own refusals (an unknown flag, a value of the wrong type, a missing option) as one error line, exit 2.

    Typer would draw them as a box of several lines under the usage; every other error here is one line.
    """
    try:
        yield
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            raise  # no command at all: the help is the answer
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        err.print(error_line(exc.format_message() + hint), highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from exc


class OneLineUsageErrors(TyperGroup):
    """The command group, with Click's usage errors as one line (see :func:`_usage_errors_as_one_line`)."""

    def make_context(self, info_name: str | None, args: list[str], parent: ClickContext | None = None, **extra: Any) -> ClickContext:
        with _usage_errors_as_one_line():  # the root's own flags
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: ClickContext) -> Any:
        with _usage_errors_as_one_line():  # the command's name and flags are parsed here
            return super().invoke(ctx)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, cls=OneLineUsageErrors,
                  help="Onboard Microsoft 365 tenants to an MDR provider.")


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")] = False) -> None:
    """Onboard Microsoft 365 tenants to an MDR provider, tenant by tenant, with Prefect."""
    DEBUG["on"] = debug


def fail(message: str, code: int = EXIT_FAILED, exc: BaseException | None = None) -> typer.Exit:
    """Print one error line (and the traceback with ``--debug``); returns the exit to raise."""
    err.print(error_line(message), highlight=False)
    if DEBUG["on"] and exc is not None:
        err.print_exception(show_locals=False)
    return typer.Exit(code)


def refused(problems: list[str], summary: str | None = None) -> typer.Exit:
    """Print one error line per problem (and ``<summary>: N problem(s)``); returns the exit 2 to raise."""
    for problem in problems:
        err.print(error_line(problem), highlight=False)
    if summary:
        err.print(f"{summary}: {len(problems)} problem(s)", highlight=False)
    return typer.Exit(EXIT_BAD_INPUT)


def positive(option: str, value: float, suffix: str = "") -> None:
    """Refuse a non-positive, infinite or NaN ``value`` of ``option`` (Click's float ranges let NaN and inf through)."""
    if not math.isfinite(value):
        raise fail(f"{option} must be a finite number, got {value:g}{suffix}", EXIT_BAD_INPUT)
    if value <= 0:
        raise fail(f"{option} must be positive, got {value:g}{suffix}", EXIT_BAD_INPUT)


def checked(problems: list[str], build: Callable[[], Model], names: dict[str, str]) -> Model | None:
    """``build()``, or None with its validation problems added to ``problems``, each field named as ``names`` says (a flag)."""
    from pydantic import ValidationError

    from m365_onboarding.onboard import describe

    try:
        return build()
    except ValidationError as exc:
        problems.extend(describe(exc, names))
        return None


def _setting_problem(error: ErrorDetails, prefix: str, delimiter: str) -> str:
    """One problem of the settings, naming the environment variable that sets the field."""
    path = []
    for part in error["loc"]:
        if not isinstance(part, str):
            break  # an index into a list setting: the variable is the list's
        path.append(part.upper())
    message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
    return f"settings: {prefix}{delimiter.join(path)}: {message}" if path else f"settings: {message}"  # a check across fields names them


def read_settings() -> tuple[OnboardingSettings | None, list[str]]:
    """The settings from the environment and ``.env``, or the problems with them, one line each naming its variable."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from core.settings import OnboardingSettings

    prefix = OnboardingSettings.model_config.get("env_prefix") or ""
    delimiter = OnboardingSettings.model_config.get("env_nested_delimiter") or "__"
    try:
        return OnboardingSettings(), []
    except ValidationError as exc:
        return None, [_setting_problem(error, prefix, delimiter) for error in exc.errors()]
    except SettingsError as exc:  # a list or object setting whose value is not JSON; the message names the top-level field
        field = re.search(r'field "(\w+)"', str(exc))
        stem = f"{prefix}{field[1]}".upper() if field else prefix
        given = sorted(name for name in os.environ if name.upper() == stem or name.upper().startswith(stem + delimiter))
        return None, [f"settings: {', '.join(given) or stem}: not valid JSON (a list or object setting is written in JSON, e.g. [\"a\", \"b\"])"]


def settings_or_exit() -> OnboardingSettings:
    """The settings; exit 2 with a line per problem when they are not valid."""
    settings, problems = read_settings()
    if settings is None:
        raise refused(problems)
    return settings


def print_json(data: Any) -> None:
    """JSON for scripts; ``ensure_ascii`` escapes every control and bidi character, and rich never sees it as markup."""
    import json

    typer.echo(json.dumps(data, indent=2))


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

    if time_scale is not None:
        positive("--time-scale", time_scale)
    try:
        loaded = load_scenario(scenario)
        folder = (state_dir or default_state_dir() / "sandbox").resolve()
        server = SandboxServer(loaded, folder, first_port=port, time_scale=time_scale)
    except ScenarioError as exc:
        raise refused(exc.problems) from exc
    except SandboxStartError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT, exc) from exc

    def ready(srv: SandboxServer) -> None:
        manifest = write_manifest(folder, srv.endpoints, srv.world)
        if write_env:
            write_env_file(write_env, srv.endpoints)
        out.print(f"sandbox ready (time scale {srv.world.clock.time_scale:g}, {len(srv.world.tenants)} tenant(s))", highlight=False)
        lines = [*srv.endpoints.base_urls.items(), ("CA bundle", srv.endpoints.ca_bundle), ("manifest", manifest),
                 ("admin API", f"{srv.endpoints.base_urls['login']}/_sandbox/"), *([("settings written to", write_env)] if write_env else [])]
        for name, where in lines:  # paths are the user's: a folder named [x] is no markup
            out.print(literal(f"  {name:<20} {where}"), highlight=False)
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

    from automations.apply import NotOnServer, apply_automations

    settings = settings_or_exit()
    try:
        with get_client(sync_client=True) as client:
            report = apply_automations(client, settings, dry_run=dry_run)
    except NotOnServer as exc:
        raise fail(str(exc), EXIT_FAILED, exc) from exc
    suffix = " (dry run: nothing changed)" if dry_run else ""
    for verb in ("created", "updated", "deleted", "unchanged"):
        for name in getattr(report, verb):
            out.print(literal(f"{verb:<10} {name}{suffix if verb != 'unchanged' else ''}"), highlight=False)


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
    from rich.table import Table

    from core.errors import OnboardingError
    from core.requests import BlockNames, TenantRequest
    from tasks.dry_run import plan_tenant

    problems: list[str] = []
    request = checked(problems, lambda: TenantRequest(tenant_id=tenant_id, organization_name=organization, provider_org_id=provider_org), TENANT_FLAGS)
    blocks = checked(problems, lambda: BlockNames(provider_app=provider_app_block, workbench=workbench_block), BLOCK_FLAGS)
    if request is None or blocks is None:
        raise refused(problems)
    try:
        result = plan_tenant(request, blocks)
    except OnboardingError as exc:
        failure = fail(exc.message.splitlines()[0], EXIT_FAILED, exc)  # the next action follows on its own line
        if exc.next_action:
            err.print(literal(f"next: {exc.next_action}"), highlight=False)
        raise failure from exc
    except ValueError as exc:  # a block that is not saved
        raise fail(str(exc), EXIT_BAD_INPUT, exc) from exc
    except Exception as exc:  # e.g. the Prefect API holding the blocks does not answer: one line, not a traceback
        raise fail(f"cannot plan: {_one_line(exc)}", EXIT_FAILED, exc) from exc
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    # The display name and the changes come from the tenant: shown literally, each change on its own line.
    table = Table(title=literal(f"Plan for {result.tenant.display_name or request.organization_name} ({request.tenant_id}): nothing is changed"))
    for column in ("step", "action", "changes"):
        table.add_column(column)
    for step in result.steps:
        table.add_row(literal(step.step), literal(step.action), Text("\n".join(printable(c) for c in step.changes) or printable(step.note or "-")))
    out.print(table)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per tenant, in a list.")] = False,
) -> None:
    """Every tenant's onboarding: run state, current step, what it waits for and since when, stalled or not."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_UI_URL

    from m365_onboarding.status import status_table, tenant_statuses

    ui_url = settings_or_exit().notifications.ui_url or PREFECT_UI_URL.value()
    try:
        with get_client(sync_client=True) as client:
            rows = tenant_statuses(client, ui_url)
    except Exception as exc:  # the server is down or unreachable: one line, not a traceback
        raise fail(f"cannot read the Prefect API: {_api_error(exc)}", EXIT_FAILED, exc) from exc
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    out.print(status_table(rows))


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
    from prefect.client.orchestration import get_client

    from automations.apply import NotOnServer
    from core.requests import BlockNames
    from m365_onboarding.deploy import DeployError, credentials_from_environment, credentials_from_sandbox
    from m365_onboarding.deploy import deploy as deploy_all
    from m365_onboarding.local_stack import StackError, project_dir

    problems: list[str] = []
    blocks = checked(problems, lambda: BlockNames(provider_app=provider_app_block, workbench=workbench_block), BLOCK_FLAGS)
    settings, settings_problems = read_settings()
    if blocks is None or settings is None:
        raise refused(problems + settings_problems)
    try:
        project = project_dir()
        app_credentials, workbench = (credentials_from_sandbox(sandbox_state.resolve()) if sandbox_state is not None
                                      else credentials_from_environment(os.environ, client_id, certificate, private_key))
    except (DeployError, StackError) as exc:
        raise fail(str(exc), EXIT_BAD_INPUT, exc) from exc
    try:
        with get_client(sync_client=True) as client:
            report = deploy_all(client, project, settings, blocks, app_credentials, workbench)
    except (DeployError, NotOnServer) as exc:
        raise fail(str(exc), EXIT_FAILED, exc) from exc
    except Exception as exc:  # the Prefect API does not answer
        raise fail(f"cannot deploy: {_api_error(exc)}", EXIT_FAILED, exc) from exc
    for kind, name, verb in report.lines:
        out.print(literal(f"{verb:<10} {kind:<11} {name}"), highlight=False)


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

    from m365_onboarding.onboard import REQUIRED_COLUMNS, InvalidRequests, requests_from_csv, start_runs

    flags = {"tenant_id": tenant_id, "organization_name": organization, "provider_org_id": provider_org, "customer_contact_email": contact,
             **modes, "provider_app_block": provider_app_block, "workbench_block": workbench_block}
    if (csv_file is None) == all(flags[k] is None for k in REQUIRED_COLUMNS):
        raise fail("give either --csv FILE or the tenant's flags (--tenant-id, --organization, --provider-org, --contact)", EXIT_BAD_INPUT)
    problems = [f"{flag}: not with --csv (the file's {field} column sets it per row)" for field, flag in _flag_names(modes).items()
                if csv_file is not None and flags[field] is not None]  # else it would be silently ignored
    if not DEPLOYMENT_NAME.fullmatch(deployment):
        problems.append(f"--deployment: expected <flow name>/<deployment name>, e.g. onboard-tenant/onboard-tenant, got {shown(deployment)}")
    requests = []
    try:
        requests = requests_from_csv(csv_file) if csv_file is not None else [request_from_flags(flags, _flag_names(modes))]
    except InvalidRequests as exc:
        problems = [*exc.problems, *problems]
    settings, settings_problems = read_settings()  # checked before anything starts, like the rows
    if problems or settings is None:
        raise refused(problems + settings_problems, "nothing started")
    try:
        ui_url = settings.notifications.ui_url or PREFECT_UI_URL.value()
        started, failed = start_runs(requests, deployment, ui_url)
    except ObjectNotFound as exc:
        raise fail(f"deployment {deployment!r} not found: run `m365-onboard deploy` first", EXIT_FAILED, exc) from exc
    except Exception as exc:
        raise fail(f"cannot start the runs: {_api_error(exc)}", EXIT_FAILED, exc) from exc
    for run in started:
        out.print(literal(f"started {run.run_name:<30} {run.tenant_id}  {run.link or run.run_id}"), highlight=False)
    for request, why in failed:
        err.print(error_line(f"not started: {request.organization_name} ({request.tenant_id}): {why}"), highlight=False)
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _flag_names(modes: dict[str, str | None]) -> dict[str, str]:
    """Every flag of a tenant by the field it fills: the fixed ones and a ``--<step>`` per mode."""
    return {**TENANT_FLAGS, **{step: f"--{step.replace('_', '-')}" for step in modes}}


def request_from_flags(flags: dict[str, str | None], names: dict[str, str]) -> OnboardingRequest:
    """The request the flags give; raises InvalidRequests naming each problem by its flag, as typed."""
    from m365_onboarding.onboard import REQUIRED_COLUMNS, InvalidRequests, build_request

    missing = sorted(names[k] for k in REQUIRED_COLUMNS if flags[k] is None)
    if missing:
        raise InvalidRequests([f"missing {', '.join(missing)}"])
    problems: list[str] = []
    request = checked(problems, lambda: build_request(flags), names)
    if request is None:
        raise InvalidRequests(problems)
    return request


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
        positive(option, value, "; nothing was started")
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
        err.print(error_line(f"{_one_line(exc)} (run again with --debug for the traceback)"), highlight=False)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
