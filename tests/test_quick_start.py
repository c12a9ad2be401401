"""The README's quick start, as a newcomer runs it: clone, run the demo command, read the summary.

Then the Prefect UI of that demo in headless Chromium: a flow run's page shows the tenant's
checklist artifact (a screenshot is kept in test-output/).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from m365_onboarding.local_stack import process_tree
from tests.prefect_harness import PROJECT
from tests.sandbox_harness import free_port_block

pytestmark = pytest.mark.slow  # starts a demo: a Prefect server, the sandbox and a worker

OUTPUT = PROJECT / "test-output"
CONTOSO = "5b0c3f3e-6c1e-4c52-9d8a-1f3b2a6e7c01"  # the default scenario's fresh tenant


def quick_start_commands() -> list[str]:
    """The commands in the fenced block under the README's "Quick start" heading."""
    readme = (PROJECT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    assert block, "no fenced block under Quick start"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.split("#", 1)[0].strip()]


@dataclass
class DemoRun:
    clone: Path
    output: str
    returncode: int


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    commands = quick_start_commands()
    assert len(commands) == 2 and commands[1] == "make test", commands
    demo_command = commands[0]
    clone = tmp_path_factory.mktemp("quick-start") / "m365-onboarding"
    subprocess.run(["git", "clone", "--quiet", str(PROJECT), str(clone)], check=True, timeout=120)
    # A newcomer's machine: a fresh Prefect home, no server configured, none of this session's settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "M365_ONBOARD_", "VIRTUAL_ENV", "UV_PROJECT"))}
    env |= {"PREFECT_HOME": str(clone.parent / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "COLUMNS": "120"}
    result = subprocess.run(shlex.split(demo_command), cwd=clone, env=env, capture_output=True, text=True, timeout=1200)
    return DemoRun(clone, result.stdout + result.stderr, result.returncode)


@pytest.mark.timeout(1500)
def test_the_readme_demo_onboards_the_sample_tenants_from_a_fresh_clone(demo_run: DemoRun) -> None:
    out = demo_run.output
    assert demo_run.returncode == 0, out[-5000:]
    summary = out.split("\nSummary\n", 1)[1]
    rows = {line.split("  ")[1].strip(): line for line in summary.splitlines() if line.startswith("  ") and line[2:3].strip()}
    assert re.search(r"Contoso\s+Completed\s+onboarded: alerts are flowing", rows["Contoso"]), summary
    assert re.search(r"Fabrikam\s+Completed\s+onboarded: alerts are flowing", rows["Fabrikam"]), summary
    assert re.search(r"Northwind Traders\s+\w+\s+stalled on admin_consent: waiting for", rows["Northwind Traders"]), summary
    assert len(re.findall(r"http://127\.0\.0\.1:\d+/runs/flow-run/[0-9a-f-]{36}", summary)) == 3, summary
    assert "cancelled onboard-Northwind Traders: the demo ended while it waited" in out
    assert "Traceback" not in out
    # The last table agrees with the summary: every step of the two completed tenants is done.
    last_alerts_row = [line for line in out.splitlines() if "4. First alerts" in line][-1]
    assert last_alerts_row.count("done") == 2, last_alerts_row
    # Nothing left running: no process works in the clone any more.
    leftovers = [pid for pid in process_tree(1) if _cwd(pid).startswith(str(demo_run.clone))]
    assert not leftovers, leftovers


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium, installed here when missing and this user may (root, apt-get, a reachable mirror)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Chromium is not installed and this user cannot install Debian's package (needs root and apt-get)")
    install = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium"
    result = subprocess.run(["sh", "-c", install], capture_output=True, text=True, timeout=900)
    if result.returncode != 0 or not shutil.which("chromium"):
        pytest.skip(f"installing Debian's chromium failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    return shutil.which("chromium") or "chromium"


@pytest.fixture
def demo_ui(demo_run: DemoRun, tmp_path: Path) -> Iterator[str]:
    """The demo's Prefect server started again on its SQLite database, with the UI."""
    if demo_run.returncode != 0:
        pytest.skip("the demo did not finish (see the test above)")
    port = free_port_block(1)
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(demo_run.clone / ".state" / "demo" / "prefect"), "PREFECT_API_URL": api,
           "PREFECT_UI_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(240):
            try:
                if requests.get(f"{api}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


@pytest.mark.timeout(600)
def test_the_demo_run_shows_the_tenant_checklist_in_the_prefect_ui(demo_run: DemoRun, chromium: str, demo_ui: str) -> None:
    from playwright.sync_api import sync_playwright

    link = re.search(r"http://127\.0\.0\.1:\d+/runs/flow-run/([0-9a-f-]{36})", demo_run.output.split("\nSummary\n", 1)[1])
    assert link, demo_run.output[-3000:]
    run_page = f"{demo_ui}/runs/flow-run/{link.group(1)}"  # Contoso's run: the first in the summary
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(run_page)
            page.get_by_text("onboard-Contoso").first.wait_for(timeout=60_000)
            page.locator("#artifacts").click()  # the run page's Artifacts tab
            checklist = page.get_by_text(f"onboarding-{CONTOSO}").first
            checklist.wait_for(timeout=60_000)
            page.screenshot(path=str(OUTPUT / "demo-flow-run-artifacts.png"), full_page=True)
            assert page.get_by_text("Onboarding checklist of Contoso").first.is_visible()
        finally:
            browser.close()
    assert (OUTPUT / "demo-flow-run-artifacts.png").stat().st_size > 10_000
