"""Small helpers the tests share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
FIGURES = Path(__file__).resolve().parents[1] / "test-output" / "figures"


def present(value: T | None) -> T:
    """``value``, which the test expects to be there (a failed assertion if it is None)."""
    assert value is not None, "expected a value, got None"
    return value


def keep_figures(name: str, figures: dict[str, Any]) -> None:
    """Print a test's figures and keep them in ``test-output/figures/<name>.json``, for the run's report."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    text = json.dumps(figures, indent=1, default=str)
    (FIGURES / f"{name}.json").write_text(text + "\n", encoding="utf-8")
    print(text)
