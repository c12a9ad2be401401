"""`m365-onboard demo --keep-running`: the Prefect UI stays up after the summary; Ctrl-C stops it all.

While it is up, the UI is used as the team would: a tenant's flow run page, in headless Chromium,
shows the tenant's checklist artifact (the screenshot is kept in test-output/).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from m365_onboarding.local_stack import child_pids, process_tree, running, signal_all
from tests.prefect_harness import PROJECT

pytestmark = pytest.mark.slow  # starts a demo: a Prefect server, the sandbox and a worker

STAYS_UP = re.compile(r"The Prefect UI stays up at (http://\S+);")
RUN_LINK = re.compile(r"^Contoso\s+http://\S+/runs/flow-run/([0-9a-f-]{36})", re.M)
CONTOSO = "5b0c3f3e-6c1e-4c52-9d8a-1f3b2a6e7c01"  # the default scenario's fresh tenant
OUTPUT = PROJECT / "test-output"
APT_CHROMIUM = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium"


def _chromium() -> tuple[str | None, list[str]]:
    """A Chromium to drive: Debian's (installed with apt-get as root or through sudo), else Playwright's own.

    Returns its path (None: Playwright's bundled one) and, when there is none, why each way failed.
    """
    if found := shutil.which("chromium"):
        return found, []
    why: list[str] = []
    if shutil.which("apt-get"):
        sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
        if sudo is None:
            why.append("Debian's chromium: apt-get needs root and there is no sudo")
        else:
            result = subprocess.run([*sudo, "sh", "-c", APT_CHROMIUM], capture_output=True, text=True, timeout=900)
            if (found := shutil.which("chromium")) is not None:
                return found, []
            why.append(f"Debian's chromium: {(result.stderr or result.stdout).strip().splitlines()[-1:] or result.returncode}")
    result = subprocess.run([sys.executable, "-m", "playwright", "install", "chromium"], capture_output=True, text=True, timeout=900)
    if result.returncode == 0:
        return None, []
    why.append(f"Playwright's chromium: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    return "", why


@pytest.fixture(scope="module")
def chromium() -> str | None:
    path, why = _chromium()
    if path == "":
        pytest.skip("no Chromium to drive the Prefect UI with: " + "; ".join(why))
    return path


def _artifact_exists(ui: str, key: str) -> bool:
    found = requests.post(f"{ui}/api/artifacts/filter", json={"artifacts": {"key": {"any_": [key]}}, "limit": 1}, timeout=10)
    return found.ok and bool(found.json())


def _show_checklist(chromium: str | None, ui: str, run_id: str) -> None:
    """Open the run's page, its Artifacts tab, and find the tenant's checklist there."""
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{ui}/runs/flow-run/{run_id}")
            page.get_by_text("onboard-Contoso").first.wait_for(timeout=60_000)
            page.locator("#artifacts").click()  # the run page's Artifacts tab
            page.get_by_text(f"onboarding-{CONTOSO}").first.wait_for(timeout=60_000)
            page.screenshot(path=str(OUTPUT / "demo-flow-run-artifacts.png"), full_page=True)
            assert page.get_by_text("Onboarding checklist of Contoso").first.is_visible()
        finally:
            browser.close()
    assert (OUTPUT / "demo-flow-run-artifacts.png").stat().st_size > 10_000


@pytest.mark.timeout(900)
def test_keep_running_leaves_the_ui_up_until_ctrl_c_then_stops_everything(tmp_path: Path, chromium: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "M365_ONBOARD_"))}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "COLUMNS": "120"}
    # A short watch (the runs are started before it): this test is about what comes after the summary.
    demo = subprocess.Popen([sys.executable, "-m", "m365_onboarding.cli", "demo", "--keep-running", "--timeout", "30",
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
        # The demo and the services it started; not the worker's flow-run processes, which end when a run suspends.
        started = [demo.pid, *child_pids(demo.pid)]
        assert len(started) >= 4, f"expected the demo, its server, sandbox and worker, found {len(started)} processes"
        assert requests.get(f"{ui}/api/health", timeout=10).ok, "the Prefect server is not up after the summary"
        runs = requests.post(f"{ui}/api/flow_runs/filter", json={}, timeout=10).json()
        tenants = {t for r in runs for t in r["tags"] if t.startswith("tenant:")}  # a run gets its name when it starts
        assert len(tenants) == 3, [r["tags"] for r in runs]

        contoso = RUN_LINK.search("".join(lines))
        assert contoso, "".join(lines)[-3000:]
        while not _artifact_exists(ui, f"onboarding-{CONTOSO}"):  # the run's first step writes it
            assert time.monotonic() < deadline, "Contoso's checklist artifact never appeared"
            time.sleep(1)
        _show_checklist(chromium, ui, contoso.group(1))
        assert [pid for pid in started if not running(pid)] == [], "a process of the demo ended while it was to stay up"

        everything = process_tree(demo.pid)
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in the terminal
        assert demo.wait(timeout=180) == 0, "".join(lines)[-3000:]
        reader.join(timeout=10)
        left = [pid for pid in everything if running(pid)]
        assert left == [], f"still running after Ctrl-C: {left}"
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{ui}/api/health", timeout=5)
    finally:  # a failed assertion above must not leave the demo's server, sandbox or worker running
        if demo.poll() is None:
            signal_all(process_tree(demo.pid), signal.SIGKILL)
