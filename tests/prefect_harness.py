"""A real Prefect server and process worker for end-to-end tests, each in its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
from prefect.testing.utilities import prefect_test_harness

from m365_onboarding.local_stack import process_tree
from tests.sandbox_harness import free_port_block

PROJECT = Path(__file__).resolve().parents[1]
POOL = "m365-onboarding"


@dataclass
class PrefectStack:
    """``prefect server start`` (SQLite under a temporary PREFECT_HOME) and workers on one pool."""

    home: Path
    api_url: str
    server: subprocess.Popen
    log_dir: Path
    workers: list[subprocess.Popen]
    server_env: dict[str, str] = field(default_factory=dict)  # e.g. the database URL; the server's only

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
            **(extra or {}),
        }

    def cli(self, *args: str, cwd: Path = PROJECT, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=cwd, env=self.env(), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def start_worker(self, extra_env: dict[str, str]) -> subprocess.Popen:
        log = (self.log_dir / f"worker-{len(self.workers)}.log").open("w")
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process"],
            cwd=PROJECT, env=self.env(extra_env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.workers.append(worker)
        return worker

    def kill_worker(self, worker: subprocess.Popen) -> None:
        """SIGKILL the worker and every process under it, as losing the machine would.

        Prefect may start a flow run in a session of its own, so the worker's process group is not
        enough: the whole tree is killed, leaves first, so that nothing is reparented and survives.
        """
        for pid in reversed(process_tree(worker.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.wait(timeout=30)

    def restart_server(self, timeout: float = 180) -> None:
        """Stop the server and start it again on the same port and database."""
        self.stop_server()
        self.start_server(timeout)

    def stop_server(self) -> None:
        os.killpg(self.server.pid, signal.SIGTERM)
        self.server.wait(timeout=60)

    def start_server(self, timeout: float = 180) -> None:
        """Start the server again on the same port and database."""
        self.server = _launch_server(self, int(self.api_url.rsplit(":", 1)[1].split("/")[0]))
        _wait_healthy(self, timeout)

    def stop_workers(self) -> None:
        """Kill every worker still running, so the next test's runs go to its own worker."""
        for worker in self.workers:
            if worker.poll() is None:
                self.kill_worker(worker)

    def stop(self) -> None:
        for process in [*self.workers, self.server]:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(process.pid, signal.SIGKILL)


def _launch_server(stack: PrefectStack, port: int) -> subprocess.Popen:
    log = (stack.log_dir / "server.log").open("a")
    return subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=stack.log_dir, env=stack.env(stack.server_env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def _wait_healthy(stack: PrefectStack, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.server.poll() is not None:
            raise RuntimeError(f"prefect server exited:\n{(stack.log_dir / 'server.log').read_text()}")
        try:
            if requests.get(f"{stack.api_url}/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    stack.stop()
    raise RuntimeError(f"prefect server did not start in {timeout}s:\n{(stack.log_dir / 'server.log').read_text()}")


def start_prefect(tmp: Path, timeout: float = 180, server_env: dict[str, str] | None = None) -> PrefectStack:
    home = tmp / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port_block(1)
    stack = PrefectStack(home, f"http://127.0.0.1:{port}/api", None, tmp, [], server_env or {})  # type: ignore[arg-type]
    stack.server = _launch_server(stack, port)
    _wait_healthy(stack, timeout)
    return stack


def in_process_server() -> Iterator[None]:
    """A test Prefect server (Prefect's own harness) that this process's flows and tasks talk to.

    Each test package that needs one declares it as its package-scoped ``prefect_server`` fixture:
    one server per package, not per session, because the harness drains Prefect's event and log
    workers when it stops, and by the end of a session they hold work for servers other tests stopped.
    """
    with prefect_test_harness(server_startup_timeout=120):
        yield
