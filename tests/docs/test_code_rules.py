"""Rules of the code that a linter does not check: errors keep their cause."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPLICATION = ("automations", "bench", "blocks", "clients", "core", "flows", "m365_onboarding", "tasks")


def test_no_error_is_raised_without_its_cause() -> None:
    """``raise … from None`` hides why something failed; application code writes ``raise … from exc``."""
    hidden = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for package in APPLICATION
        for path in sorted((ROOT / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Raise) and isinstance(node.cause, ast.Constant) and node.cause.value is None
    ]
    assert hidden == []
