"""A small OData ``$filter`` parser for the forms Graph supports on the emulated collections.

Supported: ``eq`` and ``in`` (default queries), ``ne``, ``not(...)`` and ``endsWith`` (advanced
queries only: they need ``ConsistencyLevel: eventual`` and ``$count=true``, as on real Graph), ``startsWith``, lambda
``coll/any(x:x eq 'v')``, ``and``, ``or`` and parentheses. String literals use single quotes with
``''`` for a quote. String comparison is case-insensitive, as it is for directory properties.
Each collection declares which properties may be filtered; anything else is an unsupported query.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sandbox.graph.errors import RequestBadRequest, UnsupportedQuery

Predicate = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<punct>[(),:/])|(?P<word>[A-Za-z_][A-Za-z0-9_.@]*)|(?P<other>\S))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            break
        pos = match.end()
        kind = match.lastgroup or "other"
        value = match.group(kind)
        if kind == "other":
            raise RequestBadRequest(f"Invalid filter clause: syntax error at position {match.start(kind)} in '{text}'.")
        tokens.append((kind, value))
    return tokens


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class _Parser:
    def __init__(self, text: str, scalar: set[str], collections: set[str], advanced: bool) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self.scalar = scalar
        self.collections = collections
        self.advanced = advanced

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token[1].lower() != expected.lower()):
            raise RequestBadRequest(f"Invalid filter clause: expected {expected or 'more input'} in '{self.text}'.")
        self.pos += 1
        return token[1]

    def literal(self) -> str | bool | None:
        kind, value = self.peek() or ("", "")
        self.pos += 1
        if kind == "string":
            return value[1:-1].replace("''", "'")
        if value in ("true", "false"):
            return value == "true"
        if value == "null":
            return None
        raise RequestBadRequest(f"Invalid filter clause: expected a literal, got '{value}' in '{self.text}'.")

    def parse(self) -> Predicate:
        predicate = self.disjunction()
        if self.peek() is not None:
            raise RequestBadRequest(f"Invalid filter clause: unexpected '{self.peek()[1]}' in '{self.text}'.")  # type: ignore[index]
        return predicate

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while (token := self.peek()) and token[1].lower() == "or":
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda obj: any(p(obj) for p in parts))

    def conjunction(self) -> Predicate:
        parts = [self.atom()]
        while (token := self.peek()) and token[1].lower() == "and":
            self.take()
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else (lambda obj: all(p(obj) for p in parts))

    def require_advanced(self, what: str) -> None:
        if not self.advanced:
            raise UnsupportedQuery(f"Unsupported or invalid query filter clause specified for property '{what}' of resource 'User'.")

    def property_name(self, name: str) -> str:
        if name not in self.scalar:
            raise UnsupportedQuery(f"Unsupported or invalid query filter clause specified for property '{name}'.")
        return name

    def atom(self) -> Predicate:
        token = self.peek()
        if token is None:
            raise RequestBadRequest(f"Invalid filter clause: unexpected end of '{self.text}'.")
        if token[1] == "(":
            self.take("(")
            inner = self.disjunction()
            self.take(")")
            return inner
        name = self.take()
        if name == "not" and (nxt := self.peek()) and nxt[1] == "(":
            self.require_advanced("not")
            self.take("(")
            negated = self.disjunction()
            self.take(")")
            return lambda obj: not negated(obj)
        if name in ("startsWith", "endsWith"):
            if name == "endsWith":
                self.require_advanced(name)
            self.take("(")
            prop = self.property_name(self.take())
            self.take(",")
            value = _fold(self.literal())
            self.take(")")
            if name == "startsWith":
                return lambda obj: isinstance(obj.get(prop), str) and obj[prop].lower().startswith(value)
            return lambda obj: isinstance(obj.get(prop), str) and obj[prop].lower().endswith(value)
        nxt = self.peek()
        if nxt and nxt[1] == "/":
            if name not in self.collections:
                raise UnsupportedQuery(f"Unsupported or invalid query filter clause specified for property '{name}'.")
            self.take("/")
            self.take("any")
            self.take("(")
            var = self.take()
            self.take(":")
            if self.take() != var:
                raise RequestBadRequest(f"Invalid filter clause: lambda variable mismatch in '{self.text}'.")
            self.take("eq")
            value = _fold(self.literal())
            self.take(")")
            return lambda obj: any(_fold(v) == value for v in obj.get(name) or [])
        prop = self.property_name(name)
        operator = self.take().lower()
        if operator == "in":
            self.take("(")
            values = [_fold(self.literal())]
            while (token := self.peek()) and token[1] == ",":
                self.take(",")
                values.append(_fold(self.literal()))
            self.take(")")
            return lambda obj: _fold(obj.get(prop)) in values
        if operator not in ("eq", "ne"):
            raise UnsupportedQuery(f"Unsupported filter operator '{operator}'.")
        value = _fold(self.literal())
        if operator == "ne":
            self.require_advanced(f"{prop} ne")
            return lambda obj: _fold(obj.get(prop)) != value
        return lambda obj: _fold(obj.get(prop)) == value


def parse_filter(text: str, scalar: set[str], collections: set[str] = frozenset(), advanced: bool = False) -> Predicate:  # type: ignore[assignment]
    """Compile ``text`` into a predicate over an object's Graph JSON."""
    return _Parser(text, set(scalar), set(collections), advanced).parse()
