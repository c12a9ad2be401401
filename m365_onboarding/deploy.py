"""``m365-onboard deploy``: the work pool, the credential blocks, the deployments and the automations.

Each part is observed first and changed only where it differs, so running it again changes nothing.
Deployments come from ``prefect.yaml`` through Prefect's own ``prefect deploy``; the automations
through :func:`automations.apply.apply_automations`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prefect.blocks.core import Block
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import DeploymentUpdate, WorkPoolCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.filesystems import LocalFileSystem
from prefect.settings import PREFECT_API_URL
from pydantic import SecretStr

from automations.apply import apply_automations
from blocks.credentials import ProviderAppCredentials, WorkbenchCredentials
from core.dispatch import sync_result
from core.requests import BlockNames
from core.settings import OnboardingSettings
from m365_onboarding.local_stack import POOL


class DeployError(RuntimeError):
    """Something the deployment needs is missing or refused; the message says what to do."""


@dataclass
class DeployReport:
    """What changed, per kind of object: ``(kind, name, verb)`` with verb created, updated, unchanged or kept."""

    lines: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, kind: str, name: str, verb: str) -> None:
        self.lines.append((kind, name, verb))

    def changed(self) -> list[tuple[str, str, str]]:
        return [line for line in self.lines if line[2] in ("created", "updated", "deleted")]


def credentials_from_sandbox(state: Path) -> tuple[ProviderAppCredentials, WorkbenchCredentials]:
    """The sandbox app's secret and the Workbench key, read from the files its manifest names."""
    manifest_path = state / "sandbox.json"
    if not manifest_path.is_file():
        raise DeployError(f"{manifest_path} not found: start the sandbox first (`m365-onboard sandbox --state-dir {state}`)")
    try:
        manifest = json.loads(manifest_path.read_text())
        secret = Path(next(iter(manifest["app"]["secret_files"].values()))).read_text().strip()
        key = Path(next(iter(manifest["workbench_api_key_files"].values()))).read_text().strip()
        return (ProviderAppCredentials(client_id=manifest["app"]["client_id"], client_secret=SecretStr(secret)),
                WorkbenchCredentials(api_key=SecretStr(key)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration) as exc:  # not as the sandbox writes it
        # Only the exception's type: its message could quote the secret files' contents.
        raise DeployError(f"{manifest_path} is not a sandbox manifest ({type(exc).__name__}): restart the sandbox to rewrite it") from exc


def credentials_from_environment(env: Mapping[str, str], client_id: str | None, certificate: Path | None,
                                 private_key: Path | None) -> tuple[ProviderAppCredentials | None, WorkbenchCredentials | None]:
    """Credentials given for a real tenant: the client id and certificate files as flags, secrets from the environment.

    ``M365_ONBOARD_APP_CLIENT_SECRET`` and ``M365_ONBOARD_WORKBENCH_API_KEY`` are read from the
    environment, never from flags, so they stay out of shell history and process listings.
    """
    secret = env.get("M365_ONBOARD_APP_CLIENT_SECRET")
    app = None
    if client_id or certificate or private_key or secret:
        if not client_id:
            raise DeployError("--client-id is needed with a certificate or M365_ONBOARD_APP_CLIENT_SECRET")
        if (certificate is None) != (private_key is None):
            raise DeployError("--certificate and --private-key go together")
        try:
            if certificate is not None and private_key is not None:
                app = ProviderAppCredentials(client_id=client_id, certificate_pem=certificate.read_text(),
                                             certificate_private_key=SecretStr(private_key.read_text()))
            else:
                app = ProviderAppCredentials(client_id=client_id, client_secret=SecretStr(secret) if secret else None)
        except OSError as exc:
            raise DeployError(f"cannot read {exc.filename}: {exc.strerror}") from exc
        except ValueError as exc:  # pydantic's ValidationError: name the first problem only, never the values
            first = exc.errors()[0] if hasattr(exc, "errors") else {"msg": str(exc)}
            raise DeployError(f"provider app credentials: {first['msg']}") from exc
    key = env.get("M365_ONBOARD_WORKBENCH_API_KEY")
    try:
        workbench = WorkbenchCredentials(api_key=SecretStr(key), organization_id=env.get("M365_ONBOARD_WORKBENCH_ORGANIZATION_ID")) if key else None
    except ValueError as exc:  # never the values: the message names the field only
        first = exc.errors()[0] if hasattr(exc, "errors") else {"msg": str(exc)}
        raise DeployError(f"workbench credentials: {first['msg']}") from exc
    return app, workbench


def _fields(block: Block) -> dict[str, Any]:
    return {name: getattr(block, name) for name in type(block).model_fields}  # SecretStr compares by value


def ensure_block(report: DeployReport, block: Block | None, block_type: type[Block], name: str) -> None:
    """Save ``block`` under ``name`` unless an equal one is saved; with no block given, keep what is there."""
    try:
        existing = sync_result(block_type.load(name))
    except ValueError:  # not saved yet
        existing = None
    if block is None:
        if existing is None:
            raise DeployError(f"block {name!r} ({block_type.get_block_type_slug()}) is not saved and no credential was given for it")
        report.add("block", name, "kept")
        return
    if existing is not None and _fields(existing) == _fields(block):
        report.add("block", name, "unchanged")
        return
    block.save(name, overwrite=True)
    report.add("block", name, "updated" if existing is not None else "created")


def ensure_work_pool(client: SyncPrefectClient, report: DeployReport, pool: str) -> None:
    try:
        client.read_work_pool(pool)
        report.add("work pool", pool, "unchanged")
    except ObjectNotFound:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            report.add("work pool", pool, "created")
        except ObjectAlreadyExists:  # a worker started meanwhile creates its pool itself
            report.add("work pool", pool, "unchanged")


def _deployments(client: SyncPrefectClient, names: list[str]) -> dict[str, Any]:
    found = client.read_deployments(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names)))
    return {d.name: d for d in found}


def ensure_deployments(client: SyncPrefectClient, report: DeployReport, project: Path, env: Mapping[str, str]) -> list[str]:
    """``prefect deploy --all`` from the project's ``prefect.yaml``; reports each deployment as created or updated; returns their names."""
    names = [d["name"] for d in yaml.safe_load((project / "prefect.yaml").read_text()).get("deployments", [])]
    before = _deployments(client, names)
    result = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=project, env=dict(env),
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        raise DeployError("prefect deploy --all failed: " + (lines[-1] if lines else f"exit {result.returncode}"))
    after = _deployments(client, names)
    for name in names:
        if name not in after:
            raise DeployError(f"deployment {name!r} is not on the server after prefect deploy")
        report.add("deployment", name, "updated" if name in before else "created")  # prefect deploy always rewrites it
    return names


RESULTS_BLOCK = "m365-onboarding-results"


def ensure_result_storage(report: DeployReport, project: Path, settings: OnboardingSettings) -> str:
    """The block every worker keeps task results in, as ``block-type/name``; the default one is made here.

    Without one each worker writes results under its own PREFECT_HOME, and a run resumed on
    another worker (or host) would start again from an empty cache.
    """
    if settings.results.storage_block is not None:
        name = settings.results.storage_block.split("/", 1)[1]
        try:
            sync_result(Block.load(settings.results.storage_block))
        except ValueError as exc:
            raise DeployError(f"M365_ONBOARD_RESULTS__STORAGE_BLOCK {settings.results.storage_block!r} is not a saved block: {exc}") from exc
        report.add("block", name, "kept")
        return settings.results.storage_block
    folder = (settings.results.local_path or project / ".state" / "results").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    ensure_block(report, LocalFileSystem(basepath=str(folder)), LocalFileSystem, RESULTS_BLOCK)
    return f"{LocalFileSystem.get_block_type_slug()}/{RESULTS_BLOCK}"


def use_result_storage(client: SyncPrefectClient, names: list[str], storage_block: str) -> None:
    """Point every deployment's runs at the shared result storage and Prefect's JSON serializer."""
    for deployment in _deployments(client, names).values():
        variables = dict(deployment.job_variables or {})
        variables["env"] = {**dict(variables.get("env") or {}),
                            "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": storage_block, "PREFECT_RESULTS_DEFAULT_SERIALIZER": "json"}
        client.update_deployment(deployment.id, DeploymentUpdate(job_variables=variables))


def deploy(client: SyncPrefectClient, project: Path, settings: OnboardingSettings, blocks: BlockNames,
           app: ProviderAppCredentials | None, workbench: WorkbenchCredentials | None, env: Mapping[str, str] | None = None) -> DeployReport:
    """Everything the onboarding needs on the Prefect server, idempotently, in dependency order."""
    report = DeployReport()
    ensure_work_pool(client, report, POOL)
    ensure_block(report, app, ProviderAppCredentials, blocks.provider_app)
    ensure_block(report, workbench, WorkbenchCredentials, blocks.workbench)
    env = dict(env if env is not None else os.environ)
    if PREFECT_API_URL.value():  # the server this process talks to, also for `prefect deploy`
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    storage = ensure_result_storage(report, project, settings)
    names = ensure_deployments(client, report, project, env)
    use_result_storage(client, names, storage)
    automations = apply_automations(client, settings)
    for verb in ("created", "updated", "deleted", "unchanged"):
        for name in getattr(automations, verb):
            report.add("automation", name, verb)
    return report
