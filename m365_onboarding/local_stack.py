"""The processes of a local installation: a Prefect server, the sandbox and a process worker.

Used by ``m365-onboard demo``. Each is a child process in a session of its own, so that stopping it
stops everything it started; logs go to files under the state folder, never to the terminal.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

POOL = "m365-onboarding"


class StackError(RuntimeError):
    """A local process did not start; the message names it and its log."""


def project_dir() -> Path:
    """The folder holding ``prefect.yaml``: the current one, else the checkout this package runs from."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (candidate / "prefect.yaml").is_file():
            return candidate
    raise StackError("prefect.yaml not found: run this from the project's folder (a clone of m365-onboarding)")


def port_is_free(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: a port in TIME_WAIT is free for them
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(preferred: int, size: int = 1) -> int:
    """``preferred`` when it and the ``size - 1`` ports after it are free, else the first free block above it."""
    for first in range(preferred, preferred + 2000, size):
        if all(port_is_free(first + offset) for offset in range(size)):
            return first
    raise StackError(f"no {size} free port(s) from {preferred} on 127.0.0.1")


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first, then the parent's pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def child_pids(pid: int) -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and (fields := _stat(entry.name)) is not None and int(fields[1]) == pid]


def running(pid: int) -> bool:
    """Whether the process exists and has not exited (a zombie waiting for its parent has)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, parents before children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        found.append(current)
        todo.extend(child_pids(current))
    return found


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@dataclass
class Child:
    """One started process, its name and log."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 20) -> None:
        """SIGTERM the process and everything under it (a worker starts flow runs in sessions of their own), then SIGKILL."""
        if not self.alive():
            return
        tree = process_tree(self.process.pid)
        signal_all(tree, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        signal_all([pid for pid in reversed(tree) if Path(f"/proc/{pid}").exists()], signal.SIGKILL)
        if self.alive():
            self.process.wait(timeout=10)


@dataclass
class LocalStack:
    """The children started so far, stopped in reverse order."""

    state: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str], extra_env: dict[str, str] | None = None, cwd: Path | None = None) -> Child:
        log = self.state / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(args, cwd=cwd or project_dir(), env={**self.env, **(extra_env or {})},
                                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def wait_until(self, child: Child, ready: Callable[[], bool], what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not child.alive():
                raise StackError(f"{child.name} exited with {child.process.returncode} before {what}; its log ({child.log}) ends:\n{child.tail()}")
            if ready():
                return
            time.sleep(0.3)
        raise StackError(f"{child.name}: not {what} after {timeout_s:.0f}s; its log ({child.log}) ends:\n{child.tail()}")

    def stop(self) -> None:
        """Stop every child, newest first; a second Ctrl-C (or uv forwarding the first) cannot cut this short."""
        with uninterrupted():
            for child in reversed(self.children):
                child.stop()
            self.children.clear()


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM for the block: a clean-up that a second signal must not cut short.

    ``uv run`` forwards the signal it got to its child, so one ``kill`` can arrive twice.
    """
    in_main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_on_terminate() -> None:
    """Make SIGTERM (``kill``, a closed terminal) and SIGINT raise KeyboardInterrupt in this process.

    So a command that started children stops them in its ``finally``, also when it was started in
    the background, where SIGINT is ignored. Call it from the main thread.
    """
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def server_healthy(api_url: str) -> bool:
    try:
        return requests.get(f"{api_url.rstrip('/')}/health", timeout=2).ok
    except requests.RequestException:
        return False


def start_prefect_server(stack: LocalStack, port: int = 4200, timeout_s: float = 180) -> str:
    """``prefect server start`` with SQLite under ``<state>/prefect``; returns its API URL (set in ``stack.env``)."""
    home = stack.state / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port(port)
    api_url = f"http://127.0.0.1:{port}/api"
    stack.env |= {"PREFECT_HOME": str(home), "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                  "PREFECT_UI_URL": f"http://127.0.0.1:{port}", "PREFECT_UI_API_URL": api_url}  # the UI's own default is port 4200
    server = stack.start("prefect-server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)], cwd=home)
    stack.wait_until(server, lambda: server_healthy(api_url), "healthy", timeout_s)
    return api_url


def start_sandbox(stack: LocalStack, time_scale: float, port: int = 8443, scenario: Path | None = None,
                  timeout_s: float = 90) -> tuple[dict[str, Any], dict[str, str]]:
    """``m365-onboard sandbox`` on five free ports.

    Returns its manifest (endpoints, CA, credential files) and the ``M365_ONBOARD_*`` settings that
    point the onboarding at it, as the sandbox writes them with ``--write-env``.
    """
    folder = stack.state / "sandbox"
    manifest_path, env_path = folder / "sandbox.json", folder / "sandbox.env"
    for stale in (manifest_path, env_path):  # files of an earlier start name old ports
        stale.unlink(missing_ok=True)
    port = free_port(port, size=5)
    args = [sys.executable, "-m", "m365_onboarding.cli", "sandbox", "--state-dir", str(folder), "--port", str(port),
            "--time-scale", str(time_scale), "--write-env", str(env_path)]
    if scenario is not None:
        args += ["--scenario", str(scenario)]
    child = stack.start("sandbox", args)
    stack.wait_until(child, lambda: manifest_path.exists() and env_path.exists() and "sandbox ready" in child.tail(), "ready", timeout_s)
    settings = dict(line.split("=", 1) for line in env_path.read_text().splitlines() if "=" in line)
    return json.loads(manifest_path.read_text()), settings


def start_worker(stack: LocalStack, extra_env: dict[str, str], name: str = "worker") -> Child:
    """A process worker on the project's pool; its flow runs inherit ``extra_env``."""
    return stack.start(name, [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process"], extra_env)
