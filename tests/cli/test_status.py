"""The team's commands when the Prefect API cannot be reached: one line naming the server, and exit 1.

What it shows for real runs is tested end to end in tests/flows/test_deployed_onboarding.py.
"""

from __future__ import annotations

import socket

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from m365_onboarding.cli import app

TENANT = ["--tenant-id", "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b", "--organization", "Contoso",
          "--provider-org", "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d", "--contact", "admin@contoso.example"]


@pytest.mark.parametrize(("command", "error"), [
    (["status"], "error: cannot read the Prefect API: "),
    (["deploy"], "error: cannot deploy: "),
    (["onboard", *TENANT], "error: cannot start the runs: "),
])
def test_an_unreachable_server_is_one_line_naming_it_and_exit_1(command: list[str], error: str) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    with temporary_settings({PREFECT_API_URL: url}):
        result = CliRunner().invoke(app, command)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"{error}the Prefect API at {url} does not answer (ConnectError"), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output, result.stderr


def test_debug_adds_the_traceback_to_the_error_line() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
        result = CliRunner().invoke(app, ["--debug", "status"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot read the Prefect API")
    assert "Traceback" in result.stderr and "ConnectError" in result.stderr, result.stderr
