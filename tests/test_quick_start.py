"""The README's quick start, as a newcomer runs it: clone, run the demo command, read the summary.

What the Prefect UI of a demo shows is checked on the demo that stays up
(tests/cli/test_demo_keep_running.py), instead of starting a second server on this one's database.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from m365_onboarding.local_stack import process_tree
from tests.prefect_harness import PROJECT

pytestmark = pytest.mark.slow  # starts a demo: a Prefect server, the sandbox and a worker



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
