"""Starts a real sandbox process for tests and drives it the way production code will.

The sandbox runs as ``m365-onboard sandbox`` in a subprocess on free loopback ports, over TLS with
its own CA; tests talk to it with msal and requests, verifying TLS against that CA.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msal
import requests
import yaml

from clients.http import VerifiedSession
from core.settings import Cloud, OnboardingSettings, TimingSettings
from m365_onboarding.local_stack import free_port


def free_port_block(size: int = 5) -> int:
    """The first of ``size`` consecutive free ports on 127.0.0.1, from a random start (tests run side by side)."""
    return free_port(random.randint(20000, 60000), size)


@dataclass
class SandboxHandle:
    """A running sandbox: its endpoints, credentials and admin API."""

    process: subprocess.Popen
    state_dir: Path
    first_port: int
    manifest: dict[str, Any]
    output: list[str] = field(default_factory=list)

    # --- endpoints and TLS ----------------------------------------------------------------------
    def base_url(self, service: str) -> str:
        return self.manifest["base_urls"][service]

    @property
    def ca_bundle(self) -> str:
        return self.manifest["ca_bundle"]

    def session(self) -> requests.Session:
        """A requests session that verifies TLS against the sandbox CA."""
        return VerifiedSession(self.ca_bundle)

    # --- admin API --------------------------------------------------------------------------------
    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.base_url('login')}/_sandbox/{path.lstrip('/')}"
        return requests.request(method, url, verify=self.ca_bundle, timeout=10, **kwargs)

    def reset(self) -> None:
        self.admin("POST", "reset").raise_for_status()

    def advance(self, by: str) -> None:
        self.admin("POST", "clock/advance", json={"by": by}).raise_for_status()

    def tenant_state(self, tenant_id: str) -> dict[str, Any]:
        response = self.admin("GET", f"tenants/{tenant_id}")
        response.raise_for_status()
        return response.json()

    def request_log(self, service: str | None = None, method: str | None = None, tenant: str | None = None,
                    path_contains: str | None = None, since: int | None = None) -> list[dict[str, Any]]:
        """The sandbox's request log, filtered as its admin API filters it (a filter it does not know would be ignored)."""
        filters = {"service": service, "method": method, "tenant": tenant, "path_contains": path_contains, "since": since}
        response = self.admin("GET", "requests", params={k: v for k, v in filters.items() if v is not None})
        response.raise_for_status()
        return response.json()["requests"]

    def add_fault(self, **spec: Any) -> dict[str, Any]:
        response = self.admin("POST", "faults", json=spec)
        response.raise_for_status()
        return response.json()

    # --- credentials --------------------------------------------------------------------------------
    @property
    def client_id(self) -> str:
        return self.manifest["app"]["client_id"]

    def app_secret(self, name: str = "primary") -> str:
        return Path(self.manifest["app"]["secret_files"][name]).read_text().strip()

    def app_certificate(self, name: str = "primary") -> dict[str, str]:
        files = self.manifest["app"]["certificates"][name]
        return {"cert": files["cert"], "key": files["key"]}

    def workbench_key(self, name: str = "onboarding") -> str:
        return Path(self.manifest["workbench_api_key_files"][name]).read_text().strip()

    def msal_app(self, tenant: str, credential: Any = None) -> msal.ConfidentialClientApplication:
        """An unmodified msal app pointed at the sandbox's login port for ``tenant``."""
        return msal.ConfidentialClientApplication(
            self.client_id,
            authority=f"{self.base_url('login')}/{tenant}",
            client_credential=credential if credential is not None else self.app_secret(),
            instance_discovery=False,  # the real discovery host is not the sandbox
            http_client=VerifiedSession(self.ca_bundle),
        )

    def token(self, tenant: str, resource: str = "https://graph.microsoft.com") -> str:
        result = self.msal_app(tenant).acquire_token_for_client(scopes=[f"{resource}/.default"])
        assert "access_token" in result, result
        return result["access_token"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_sandbox(
    tmp_dir: Path,
    scenario: dict[str, Any] | Path | None = None,
    time_scale: float | None = None,
    first_port: int | None = None,
    extra_args: list[str] | None = None,
    timeout: float = 60,
) -> SandboxHandle:
    """Start ``m365-onboard sandbox`` and wait until it has written its manifest."""
    state_dir = tmp_dir / "state"
    args = [sys.executable, "-m", "m365_onboarding.cli", "sandbox", "--state-dir", str(state_dir)]
    if scenario is not None:
        path = scenario if isinstance(scenario, Path) else tmp_dir / "scenario.yaml"
        if not isinstance(scenario, Path):
            path.write_text(yaml.safe_dump(scenario, sort_keys=False))
        args += ["--scenario", str(path)]
    if time_scale is not None:
        args += ["--time-scale", str(time_scale)]
    port = first_port or free_port_block()
    args += ["--port", str(port)] + (extra_args or [])
    log_path = tmp_dir / "sandbox.log"
    log = log_path.open("w")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    manifest_path = state_dir / "sandbox.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sandbox exited with {process.returncode}:\n{log_path.read_text()}")
        if manifest_path.exists() and "sandbox ready" in log_path.read_text():
            manifest = json.loads(manifest_path.read_text())
            return SandboxHandle(process, state_dir, port, manifest)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"sandbox did not start in {timeout}s:\n{log_path.read_text()}")


def sent_before_retry_after(
    entries: list[dict[str, Any]], key: tuple[str, ...] = ("service", "tenant_id", "app_id")
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every (answered, early) pair of request-log entries where ``early`` came from the same ``key``
    (by default the same service, tenant and app) before the Retry-After ``answered`` was given had passed.

    Both times are the sandbox's real ``received_at``; the wait is counted from when ``answered`` was
    received, not from when its response left, so the client's own transfer time is in its favour.
    """
    early = []
    for i, answered in enumerate(entries):
        if answered.get("retry_after_s") is None:
            continue
        until = _received(answered) + timedelta(seconds=answered["retry_after_s"])
        early += [
            (answered, later)
            for later in entries[i + 1 :]
            if all(later.get(k) == answered.get(k) for k in key) and _received(later) < until
        ]
    return early


def _received(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["received_at"])


def sandbox_settings(sandbox: SandboxHandle) -> OnboardingSettings:
    """Settings pointing at a running sandbox, as `m365-onboard sandbox --write-env` would set them."""
    return OnboardingSettings(
        cloud=Cloud.SANDBOX,
        login_base_url=sandbox.base_url("login"),
        graph_base_url=sandbox.base_url("graph"),
        exchange_base_url=sandbox.base_url("exchange"),
        management_activity_base_url=sandbox.base_url("management_activity"),
        workbench_base_url=sandbox.base_url("workbench"),
        ca_bundle=sandbox.ca_bundle,
        timing=TimingSettings(consistency_deadline_s=20, consistency_interval_s=0.2, consistent_reads=2, http_retries=2),
        _env_file=None,
    )


def sandbox_env(sandbox: SandboxHandle) -> dict[str, str]:
    """The M365_ONBOARD_* environment that points the project at a running sandbox."""
    return {f"M365_ONBOARD_{key.upper()}": str(value) for key, value in sandbox_settings(sandbox).model_dump(exclude_none=True).items()
            if isinstance(value, str | int | float | Path)}


def save_credential_blocks(sandbox: SandboxHandle, **workbench: Any) -> Any:
    """Save the sandbox app's and Workbench key's credential blocks under fresh names (needs a Prefect API)."""
    import uuid

    from blocks.credentials import ProviderAppCredentials, WorkbenchCredentials
    from core.requests import BlockNames

    suffix = uuid.uuid4().hex[:8]
    names = BlockNames(provider_app=f"app-{suffix}", workbench=f"workbench-{suffix}")
    ProviderAppCredentials(client_id=sandbox.client_id, client_secret=sandbox.app_secret()).save(names.provider_app)
    WorkbenchCredentials(api_key=sandbox.workbench_key(), **workbench).save(names.workbench)
    return names
