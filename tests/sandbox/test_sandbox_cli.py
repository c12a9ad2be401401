"""Starting the sandbox as a newcomer would, and what it says when the input is wrong."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.sandbox_harness import free_port_block, start_sandbox

CLI = [sys.executable, "-m", "m365_onboarding.cli", "sandbox"]


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--state-dir", str(tmp_path / "state"), *args], capture_output=True, text=True, timeout=60)


def test_default_scenario_starts_prints_endpoints_and_writes_settings(tmp_path: Path) -> None:
    env_file = tmp_path / "sandbox.env"
    handle = start_sandbox(tmp_path, None, extra_args=["--write-env", str(env_file)])
    try:
        printed = (tmp_path / "sandbox.log").read_text()
        for service in ("login", "graph", "exchange", "management_activity", "workbench"):
            assert f"https://127.0.0.1:{handle.manifest['base_urls'][service].rsplit(':', 1)[1]}" in printed
        assert handle.manifest["base_urls"]["graph"].endswith(f":{handle.first_port + 1}")
        assert "CA bundle" in printed and handle.ca_bundle in printed
        settings = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert settings["M365_ONBOARD_GRAPH_BASE_URL"] == handle.base_url("graph")
        assert settings["M365_ONBOARD_CA_BUNDLE"] == handle.ca_bundle
        assert len(handle.manifest["tenants"]) == 3
        assert handle.admin("GET", "health").json()["status"] == "ok"
    finally:
        handle.stop()


def test_credentials_and_ca_survive_a_restart(tmp_path: Path) -> None:
    first = start_sandbox(tmp_path, None)
    secret, ca = first.app_secret(), Path(first.ca_bundle).read_bytes()
    first.stop()
    second = start_sandbox(tmp_path, None)
    try:
        assert second.app_secret() == secret
        assert Path(second.ca_bundle).read_bytes() == ca
        assert oct(Path(second.manifest["app"]["secret_files"]["primary"]).stat().st_mode & 0o777) == "0o600"
    finally:
        second.stop()


def test_a_port_in_use_is_named_in_one_line(tmp_path: Path) -> None:
    first = free_port_block()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", first + 2))
        busy.listen()
        result = _run(["--port", str(first)], tmp_path)
    assert result.returncode == 2
    assert f"port {first + 2} (exchange) on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("tenants: [", "is not valid YAML"),
        ("- just a list", "must be a mapping at the top level"),
        ("tenants:\n  - {id: not-a-guid, display_name: X, initial_domain: x.onmicrosoft.com}", "tenants.0.id"),
        (
            "tenants:\n  - {id: 11111111-1111-4111-8111-111111111111, display_name: X, initial_domain: x.onmicrosoft.com, consent: {given: late}}",
            "needs 'after'",
        ),
        ("replication_lagg: 5s", "replication_lagg: Extra inputs are not permitted"),
        ("replication_lag: soon", "not a duration: 'soon'"),
        ("provider: {app: {permissions: [Mail.Send.Everything]}}", "unknown permission(s) ['Mail.Send.Everything']"),
    ],
    ids=["yaml", "not-a-mapping", "bad-guid", "late-without-after", "typo", "bad-duration", "unknown-permission"],
)
def test_a_broken_scenario_is_refused_with_the_file_and_the_problem(tmp_path: Path, content: str, expected: str) -> None:
    scenario = tmp_path / "broken.yaml"
    scenario.write_text(content)
    result = _run(["--scenario", str(scenario), "--port", str(free_port_block())], tmp_path)
    assert result.returncode == 2
    assert str(scenario) in result.stderr.replace("\n", "")
    assert expected in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr


def test_a_missing_scenario_file_is_a_clear_error(tmp_path: Path) -> None:
    result = _run(["--scenario", str(tmp_path / "nope.yaml"), "--port", str(free_port_block())], tmp_path)
    assert result.returncode == 2 and "cannot read scenario" in result.stderr


def test_a_non_positive_time_scale_is_refused(tmp_path: Path) -> None:
    result = _run(["--time-scale", "0"], tmp_path)
    assert result.returncode == 2 and "--time-scale must be positive" in result.stderr


def test_time_scale_compresses_scenario_time(tmp_path: Path) -> None:
    scenario = {"time_scale": 1, "tenants": []}
    handle = start_sandbox(tmp_path, scenario, time_scale=3600)
    try:
        import time
        from datetime import datetime

        clock = handle.admin("GET", "clock").json()
        assert clock["time_scale"] == 3600
        time.sleep(1.0)
        elapsed = datetime.fromisoformat(handle.admin("GET", "clock").json()["now"]) - datetime.fromisoformat(clock["now"])
        assert 3000 <= elapsed.total_seconds() <= 3600 * 3
    finally:
        handle.stop()


def test_the_default_scenario_file_is_valid_and_documented() -> None:
    from sandbox.core.scenario import default_scenario_path, load_scenario

    scenario = load_scenario(None)
    text = default_scenario_path().read_text()
    assert len(scenario.tenants) == 3 and text.count("#") >= 5
    assert {t.consent.given for t in scenario.tenants} == {"late", "at_start", "never"}
    assert yaml.safe_load(text)["provider"]["tenant_id"] == "1cde81fd-b430-4035-b24d-709921922876"
