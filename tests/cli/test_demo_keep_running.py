"""`m365-onboard demo --keep-running`: the Prefect UI stays up after the summary; Ctrl-C stops it all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from m365_onboarding.local_stack import process_tree, running, signal_all
from tests.prefect_harness import PROJECT

pytestmark = pytest.mark.slow  # starts a demo: a Prefect server, the sandbox and a worker

STAYS_UP = re.compile(r"The Prefect UI stays up at (http://\S+);")


@pytest.mark.timeout(900)
def test_keep_running_leaves_the_ui_up_until_ctrl_c_then_stops_everything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "M365_ONBOARD_"))}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "COLUMNS": "120"}
    # A short watch (long enough for the runs to start): this test is about what comes after the summary.
    demo = subprocess.Popen([sys.executable, "-m", "m365_onboarding.cli", "demo", "--keep-running", "--timeout", "120",
                             "--state-dir", str(tmp_path / "state")],
                            cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(demo.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 600
        while not (found := STAYS_UP.search("".join(lines))):
            assert demo.poll() is None, f"the demo exited {demo.returncode} instead of staying up:\n{''.join(lines)[-3000:]}"
            assert time.monotonic() < deadline, "no 'stays up' line after 10 minutes:\n" + "".join(lines)[-3000:]
            time.sleep(1)
        ui = found.group(1).rstrip("/")
        time.sleep(3)  # it is past the summary: nothing should be winding down
        assert requests.get(f"{ui}/api/health", timeout=10).ok, "the Prefect server is not up after the summary"
        runs = requests.post(f"{ui}/api/flow_runs/filter", json={}, timeout=10).json()
        tenants = {t for r in runs for t in r["tags"] if t.startswith("tenant:")}  # a run gets its name when it starts
        assert len(tenants) == 3, [r["tags"] for r in runs]
        started = process_tree(demo.pid)
        assert len(started) >= 4, f"expected the demo, its server, sandbox and worker, found {len(started)} processes"

        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in the terminal
        assert demo.wait(timeout=180) == 0, "".join(lines)[-3000:]
        reader.join(timeout=10)
        left = [pid for pid in started if running(pid)]
        assert left == [], f"still running after Ctrl-C: {left}"
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{ui}/api/health", timeout=5)
    finally:  # a failed assertion above must not leave the demo's server, sandbox or worker running
        if demo.poll() is None:
            signal_all(process_tree(demo.pid), signal.SIGKILL)
