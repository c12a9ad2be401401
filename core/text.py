"""Characters that mislead wherever text is printed: in an email, a table, a terminal, the Prefect UI.

Shared by the request checks (which refuse them in names) and the command line (which shows them as
escapes in anything it prints from outside). Imports nothing.
"""

from __future__ import annotations

import unicodedata

# Control (Cc: newline, ESC, BEL), format (Cf: bidi overrides, zero-width), line and paragraph
# separators, and lone surrogates (what undecodable bytes become with surrogateescape).
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def is_unsafe(char: str) -> bool:
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def first_unsafe(text: str) -> int | None:
    """The index of the first unsafe character of ``text``, or None."""
    return next((i for i, c in enumerate(text) if is_unsafe(c)), None)


def printable(text: object) -> str:
    """``text`` on one line with every unsafe character replaced by its escape, e.g. ESC by ``\\x1b``."""
    return "".join(repr(c)[1:-1] if is_unsafe(c) else c for c in str(text))  # repr: '\x1b', '\u202e', '\n'
