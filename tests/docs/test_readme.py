"""The README states what the code does: its permission table and its quick start."""

from __future__ import annotations

from tasks.catalogue import CATALOGUE
from tests.readme_tables import README, permission_table

STEP_PERMISSIONS = CATALOGUE.permission_table()


def test_readme_permission_table_matches_the_code() -> None:
    rows = permission_table(set(STEP_PERMISSIONS))
    assert set(rows) == set(STEP_PERMISSIONS)
    for step, needs in STEP_PERMISSIONS.items():
        read, apply = rows[step]
        assert (read.permissions, apply.permissions) == (frozenset(needs.read), frozenset(needs.apply)), step
        assert (read.roles, apply.roles) == (frozenset(needs.read_roles), frozenset(needs.apply_roles)), step


def test_readme_quick_start_is_one_block_of_two_commands() -> None:
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (README.parent / "Makefile").read_text()
    assert "m365-onboard demo" in makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "pytest" in makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "make test" in (README.parent / ".ci" / "run").read_text()
