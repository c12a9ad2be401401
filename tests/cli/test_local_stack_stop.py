"""Stopping the local stack (`make demo`, bench.waits) with `kill`: nothing it started is left running.

`uv run` forwards the signal it got to its child, so one `kill` arrives twice; the second must not
cut the clean-up short.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from m365_onboarding.local_stack import running, signal_all

# A stand-in for a Prefect server: it takes a moment to shut down after SIGTERM.
SLOW_CHILD = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: (print('stopping', flush=True), time.sleep(2), sys.exit(0))); "
              "print('up', flush=True); time.sleep(120)")

STACK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from m365_onboarding.local_stack import LocalStack, stop_on_terminate
    stop_on_terminate()
    stack = LocalStack(Path(sys.argv[1]))
    first = stack.start("first", [sys.executable, "-c", "import time; time.sleep(120)"])  # like the sandbox
    slow = stack.start("slow", [sys.executable, "-c", sys.argv[2]])  # like the server: stopped first, newest first
    print(first.process.pid, slow.process.pid, flush=True)
    try:
        time.sleep(120)
    finally:
        stack.stop()
        print("stopped", flush=True)
""")


def test_a_second_kill_during_the_clean_up_does_not_leave_a_child_running(tmp_path: Path) -> None:
    stack = subprocess.Popen([sys.executable, "-c", STACK, str(tmp_path), SLOW_CHILD], stdout=subprocess.PIPE, text=True)
    assert stack.stdout is not None
    children = [int(pid) for pid in stack.stdout.readline().split()]
    slow_log = tmp_path / "logs" / "slow.log"
    deadline = time.monotonic() + 30
    while not (slow_log.exists() and "up" in slow_log.read_text()):  # its SIGTERM handler is in place
        assert time.monotonic() < deadline, "the slow child never started"
        time.sleep(0.1)
    try:
        stack.send_signal(signal.SIGTERM)
        while "stopping" not in slow_log.read_text():  # the clean-up has signalled the slow child and waits for it
            assert time.monotonic() < deadline + 30, "the clean-up never signalled the slow child"
            time.sleep(0.05)
        stack.send_signal(signal.SIGTERM)  # what `uv run` forwarding the first one does
        out, _ = stack.communicate(timeout=60)
        assert "stopped" in out, "the clean-up was cut short"
        assert [pid for pid in children if running(pid)] == [], "a child outlived the stack"
    finally:
        signal_all([pid for pid in children if running(pid)], signal.SIGKILL)
