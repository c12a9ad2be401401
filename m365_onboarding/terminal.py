"""Text from outside shown as it is, never obeyed: organization names, run names, server and file messages.

Rich reads ``[...]`` in a printed string as markup, and a terminal obeys the escape sequences it is
sent. An organization named ``Evil [/] Corp`` would crash every table that shows it, one named
``\\x1b]0;pwned\\x07`` would retitle the team's terminal, and a bidi override would make a line read
otherwise than it is. So every text that did not come from this code is printed through
:func:`literal`: a rich ``Text`` (never markup) whose unsafe characters are shown as escapes.
"""

from __future__ import annotations

from rich.text import Text

from core.text import printable


def literal(text: object, style: str = "") -> Text:
    """``text`` for rich, shown literally: no markup, no escape sequence, on one line."""
    return Text(printable(text), style=style)


def error_line(message: object) -> Text:
    """``error: <message>``, the one line each error of the command line is."""
    return Text.assemble(("error:", "red"), " ", printable(message))
