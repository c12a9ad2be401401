"""What every benchmark starts the same way: the sandbox, a real Prefect server with the project
deployed and its credential blocks saved, a process worker, and the /proc figures they cost."""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr

from automations.apply import apply_automations
from blocks.credentials import ProviderAppCredentials, WorkbenchCredentials
from core.settings import OnboardingSettings
from m365_onboarding.local_stack import uninterrupted
from tests.prefect_harness import POOL, PrefectStack, start_prefect
from tests.sandbox_harness import SandboxHandle, start_sandbox

ORG = "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d"
BLOCKS = {"provider_app": "bench-app", "workbench": "bench-wb"}
CLK = os.sysconf("SC_CLK_TCK")


def bench_arguments(parser: argparse.ArgumentParser, tenants: int, concurrency: int) -> None:
    """The options every end-to-end benchmark takes: how many tenants, how many runs at once, which database."""
    parser.add_argument("--tenants", type=int, default=tenants, help=f"tenants onboarded (default {tenants})")
    parser.add_argument("--concurrency", type=int, default=concurrency, help=f"work pool concurrency limit (default {concurrency})")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    parser.add_argument("--database-url", default=None, metavar="URL",
                        help="the server's database, an empty PostgreSQL one (postgresql+asyncpg://user:password@host/db); "
                             "default SQLite in a temporary folder")


def server_env_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """The server's environment for ``--database-url``; a bad option is the parser's error (exit 2)."""
    for option, value in (("--tenants", args.tenants), ("--concurrency", args.concurrency)):
        if value < 1:
            parser.error(f"{option} must be at least 1, got {value}")
    if args.database_url is not None and not args.database_url.startswith("postgresql+asyncpg://"):
        parser.error("--database-url: expected postgresql+asyncpg://user:password@host/database")
    return {} if args.database_url is None else {"PREFECT_SERVER_DATABASE_CONNECTION_URL": args.database_url}


def set_up_figures(args: argparse.Namespace) -> dict[str, Any]:
    """What every benchmark's JSON says about how it ran: the pool's limit and the server's database."""
    return {"pool_concurrency": args.concurrency, "database": "sqlite" if args.database_url is None else "postgresql"}


@contextmanager
def bench_sandbox(tmp: Path, scenario: dict[str, Any], time_scale: float) -> Iterator[SandboxHandle]:
    """The sandbox with this scenario, stopped at the end even when the benchmark is interrupted."""
    (tmp / "sandbox").mkdir()
    sandbox = start_sandbox(tmp / "sandbox", scenario, time_scale=time_scale)
    try:
        yield sandbox
    finally:
        with uninterrupted():
            sandbox.stop()


def bench_tenant(i: int, base: int, name: str, device: dict[str, Any]) -> dict[str, Any]:
    """A consented, audited scenario tenant numbered ``i`` (ids from ``base``), with these device delays."""
    return {"id": str(uuid.UUID(int=base + i)), "display_name": f"{name} {i}", "initial_domain": f"{name.lower()}{i}.onmicrosoft.com",
            "audit": {"enabled": True}, "device": device}


def bench_scenario(tenants: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"replication_lag": "5s", "workbench": {"organizations": [{"id": ORG, "name": "Bench"}],
            "api_keys": [{"name": "onboarding", "organization": ORG, "generate": True}]}, "tenants": tenants, **extra}


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def children_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid``'s children that it has reaped (a worker's finished flow-run processes)."""
    fields = _stat(pid)
    return (int(fields[13]) + int(fields[14])) / CLK  # cutime + cstime


def own_cpu_s(pid: int) -> float:
    """CPU seconds ``pid`` itself has used."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def tree_cpu_s(pid: int, tree: list[int]) -> float:
    """CPU seconds used by the live processes of ``tree`` (``pid`` and its descendants)."""
    total = 0.0
    for member in tree:
        try:
            total += own_cpu_s(member)
        except OSError:
            pass  # ended meanwhile
    return total


def states_of(client: SyncPrefectClient, run_ids: list[uuid.UUID]) -> list[Any]:
    """Each run's state, one request per 200 runs (at N=200 a per-run poll is itself a load on the server)."""
    found: dict[uuid.UUID, Any] = {}
    for i in range(0, len(run_ids), 200):
        chunk = run_ids[i:i + 200]
        found |= {r.id: r.state for r in client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=200)}
    return [found.get(r) for r in run_ids]


@contextmanager
def deployed(tmp: Path, sandbox: SandboxHandle, concurrency: int, server_env: dict[str, str]) -> Iterator[tuple[PrefectStack, SyncPrefectClient]]:
    """A server with the pool (limited to ``concurrency`` runs), the deployments, the bench's blocks and the automations."""
    stack = start_prefect(tmp / "prefect", server_env=server_env)
    try:
        stack.cli("work-pool", "create", POOL, "--type", "process")
        stack.cli("work-pool", "set-concurrency-limit", POOL, str(concurrency))
        stack.cli("deploy", "--all", "--no-prompt")
        with temporary_settings({PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
            ProviderAppCredentials(client_id=sandbox.client_id, client_secret=SecretStr(sandbox.app_secret())).save(BLOCKS["provider_app"])
            WorkbenchCredentials(api_key=SecretStr(sandbox.workbench_key())).save(BLOCKS["workbench"])
            # As in production: a run the worker fails to start (SQLite's 503 under a burst) is
            # reported Crashed, and the crash-recovery automation restarts it.
            apply_automations(client, OnboardingSettings(_env_file=None))
            yield stack, client
    finally:
        with uninterrupted():
            stack.stop()
