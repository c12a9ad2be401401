"""The README's permission table, read as a person reads it: per step, the read (guide, plan) and apply columns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
PERMISSION = re.compile(r"[A-Z][A-Za-z]+(?:\.[A-Za-z]+)+")
ROLE = re.compile(r"app in the ([A-Z][A-Za-z ]+?) role")


@dataclass(frozen=True)
class Column:
    permissions: frozenset[str]  # application permissions, e.g. User.Read.All
    roles: frozenset[str]  # Entra roles the app's service principal holds, e.g. Global Reader


def permission_table(steps: set[str]) -> dict[str, tuple[Column, Column]]:
    """Each of ``steps``' rows of the table: (read column, apply column)."""
    rows: dict[str, tuple[Column, Column]] = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in steps:
            read, apply = (Column(frozenset(PERMISSION.findall(c)), frozenset(ROLE.findall(c))) for c in cells[1:])
            rows[cells[0]] = (read, apply)
    return rows
