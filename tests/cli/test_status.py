"""`m365-onboard status` when the Prefect API cannot be reached: one clear line and exit 1.

What it shows for real runs is tested end to end in tests/flows/test_deployed_onboarding.py.
"""

from __future__ import annotations

import socket

from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from m365_onboarding.cli import app


def test_an_unreachable_server_is_one_line_and_exit_1() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
        result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot read the Prefect API") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output


def test_debug_adds_the_traceback_to_the_error_line() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
        result = CliRunner().invoke(app, ["--debug", "status"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot read the Prefect API")
    assert "Traceback" in result.stderr and "ConnectError" in result.stderr, result.stderr
