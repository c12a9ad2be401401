"""Runs the five emulated services, each on its own HTTPS port of 127.0.0.1.

Ports are ``P`` … ``P+4`` in the order of :data:`SERVICE_ORDER`, so a client swaps only scheme,
host and port for the real base URL (msal reads the tenant from the first path segment of its
authority, so no path prefix may stand in front of ``/{tenant}``).
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from sandbox.core.connection import ConnectionFaults
from sandbox.core.scenario import Scenario
from sandbox.core.tls import TlsFiles, ensure_tls_files
from sandbox.core.world import World

HOST = "127.0.0.1"
DEFAULT_PORT = 8443
SERVICE_ORDER = ("login", "graph", "exchange", "management_activity", "workbench")
REAL_BASES = {
    "login": "https://login.microsoftonline.com",
    "graph": "https://graph.microsoft.com",
    "exchange": "https://outlook.office365.com",
    "management_activity": "https://manage.office.com",
    "workbench": "https://workbench.expel.io",
}


class SandboxStartError(RuntimeError):
    """The sandbox cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class Endpoints:
    """Where each emulated service listens."""

    base_urls: dict[str, str]
    ca_bundle: Path

    def as_settings(self) -> dict[str, str]:
        """The project's settings (``M365_ONBOARD_*``) that point clients at this sandbox."""
        settings = {f"M365_ONBOARD_{name.upper()}_BASE_URL": url for name, url in self.base_urls.items()}
        settings["M365_ONBOARD_CLOUD"] = "sandbox"
        settings["M365_ONBOARD_CA_BUNDLE"] = str(self.ca_bundle)
        return settings


def service_ports(first_port: int) -> dict[str, int]:
    if not 1 <= first_port <= 65535 - (len(SERVICE_ORDER) - 1):
        raise SandboxStartError(f"--port must be between 1 and {65535 - len(SERVICE_ORDER) + 1}, got {first_port}")
    return {name: first_port + i for i, name in enumerate(SERVICE_ORDER)}


def check_ports_free(ports: dict[str, int]) -> None:
    """Fail before starting anything if a port is taken, naming the port and the service."""
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    raise SandboxStartError(
                        f"port {port} ({name}) on {HOST} is already in use; stop what uses it or start the "
                        f"sandbox on other ports with --port (it needs {len(ports)} consecutive ports)"
                    ) from exc
                raise


def build_apps(world: World) -> dict[str, FastAPI]:
    from sandbox.admin import add_admin_routes
    from sandbox.exchange.routes import build_app as exchange_app
    from sandbox.graph.routes import build_app as graph_app
    from sandbox.login.routes import build_app as login_app
    from sandbox.management_activity.routes import build_app as management_app
    from sandbox.workbench.routes import build_app as workbench_app

    login = login_app(world, before_catch_all=add_admin_routes)
    return {
        "login": login,
        "graph": graph_app(world),
        "exchange": exchange_app(world),
        "management_activity": management_app(world),
        "workbench": workbench_app(world),
    }


def write_manifest(state_dir: Path, endpoints: Endpoints, world: World) -> Path:
    """``sandbox.json``: endpoints, CA bundle and where the generated credentials are (never their values)."""
    manifest: dict[str, Any] = {
        "base_urls": endpoints.base_urls,
        "ca_bundle": str(endpoints.ca_bundle),
        "provider_tenant_id": world.scenario.provider.tenant_id,
        "app": {
            "client_id": world.app.client_id,
            "secret_files": {
                s.name: str(world.credentials_dir / f"app-secret-{s.name}.txt")
                for s in world.scenario.provider.app.secrets
                if s.generate
            },
            "certificates": {
                c.name: {"cert": str(c.pem_path) if c.pem_path else None, "key": str(c.key_path) if c.key_path else None}
                for c in world.app.certificates
            },
        },
        "workbench_api_key_files": {
            k.name: str(world.credentials_dir / f"workbench-key-{k.name}.txt")
            for k in world.scenario.workbench.api_keys
            if k.generate
        },
        "tenants": [t.id for t in world.scenario.tenants],
    }
    path = state_dir / "sandbox.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def write_env_file(path: Path, endpoints: Endpoints) -> None:
    lines = [f"{key}={value}" for key, value in sorted(endpoints.as_settings().items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class SandboxServer:
    """Five uvicorn servers in one event loop, sharing one :class:`World`."""

    def __init__(self, scenario: Scenario, state_dir: Path, first_port: int = DEFAULT_PORT, time_scale: float | None = None):
        self.ports = service_ports(first_port)
        check_ports_free(self.ports)
        self.state_dir = state_dir
        self.tls: TlsFiles = ensure_tls_files(state_dir / "tls")
        self.world = World(scenario, state_dir, time_scale=time_scale)
        self.endpoints = Endpoints(
            base_urls={name: f"https://{HOST}:{port}" for name, port in self.ports.items()},
            ca_bundle=self.tls.ca_cert,
        )
        self.world.base_urls = dict(self.endpoints.base_urls)
        self.apps = build_apps(self.world)
        self._servers: list[uvicorn.Server] = []

    def _server(self, name: str) -> uvicorn.Server:
        config = uvicorn.Config(
            ConnectionFaults(self.apps[name]),  # outermost, so that a reset fault can reach the transport
            host=HOST,
            port=self.ports[name],
            ssl_certfile=str(self.tls.server_cert),
            ssl_keyfile=str(self.tls.server_key),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,  # keep-alive clients must not hold a shutdown for long
        )
        return uvicorn.Server(config)

    async def serve(self, on_ready: Any = None) -> None:
        import signal

        self._servers = [self._server(name) for name in SERVICE_ORDER]
        tasks = [asyncio.create_task(s.serve()) for s in self._servers]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):
                pass
        while not all(s.started for s in self._servers):
            if any(t.done() for t in tasks):
                failed = [name for name, t in zip(SERVICE_ORDER, tasks, strict=True) if t.done()]
                self.stop()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise SandboxStartError(f"the {', '.join(failed)} service(s) failed to start (see the log above)")
            await asyncio.sleep(0.02)
        if on_ready is not None:
            on_ready(self)
        await asyncio.gather(*tasks)

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
