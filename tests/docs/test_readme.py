"""The README states what the code does: its permission table and its quick start."""

from __future__ import annotations

import re
from pathlib import Path

from tasks.catalogue import CATALOGUE

README = Path(__file__).resolve().parents[2] / "README.md"
STEP_PERMISSIONS = CATALOGUE.permission_table()


def _permission_rows() -> dict[str, tuple[set[str], set[str]]]:
    rows = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in STEP_PERMISSIONS:
            names = lambda cell: set(re.findall(r"[A-Z][A-Za-z]+(?:\.[A-Za-z]+)+", cell))  # noqa: E731
            rows[cells[0]] = (names(cells[1]), names(cells[2]))
    return rows


def test_readme_permission_table_matches_the_code() -> None:
    rows = _permission_rows()
    assert set(rows) == set(STEP_PERMISSIONS)
    for step, needs in STEP_PERMISSIONS.items():
        assert rows[step] == (set(needs.read), set(needs.apply)), step


def test_readme_quick_start_is_one_block_of_two_commands() -> None:
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (README.parent / "Makefile").read_text()
    assert "m365-onboard demo" in makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "pytest" in makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "make test" in (README.parent / ".ci" / "run").read_text()
