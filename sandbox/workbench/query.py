"""Workbench list queries: ``filter``, ``sort``, ``page``, ``include`` and ``flag`` parameters.

As Expel's ``jsonapi-server`` fork reads them (reference §2c-§2e): ``filter[attr]=<op>value`` with
the ``> < ! : ^ ~`` prefixes and the ``\\u2400true`` / ``\\u2400false`` null tests, comma-separated
values meaning OR and repeated keys meaning AND, relationship filters up to two levels
(``filter[vendor_alerts][security_device][id]``), repeated or comma-separated ``sort``, and
``page[offset]``/``page[limit]``. An unknown filter key is the upstream 403 "Invalid filter".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sandbox.workbench.errors import InvalidFilter, InvalidInclusion, NotEmulated, ParamValidationFailed
from sandbox.workbench.resources import Record, Resolver, ResourceSchema, Schemas

DEFAULT_PAGE_LIMIT = 50
MAX_RELATIONSHIP_LEVELS = 2
NULL_SYMBOL = "\u2400"
_PREFIX_OPERATORS = {">": "gt", "<": "lt", "!": "neq", ":": "contains", "^": "startswith", "~": "ieq"}
_SYMBOLS = {op: symbol for symbol, op in _PREFIX_OPERATORS.items()}
_STRING_ONLY = {"contains", "startswith", "ieq"}
_ORDERED = {"string", "enum", "datetime", "number", "id"}
_BRACKETS = re.compile(r"^([a-z_]+)((?:\[[^\[\]]*\])+)$")


@dataclass(frozen=True)
class Condition:
    """One alternative of a filter value: an operator and the parsed operand."""

    op: str  # eq, neq, gt, lt, contains, startswith, ieq, null, notnull
    value: Any = None


@dataclass(frozen=True)
class FilterTerm:
    """One ``filter[...]`` parameter: a path (relationships, then an attribute or ``id``) and its alternatives."""

    path: tuple[str, ...]
    kind: str
    any_of: tuple[Condition, ...]


@dataclass(frozen=True)
class ListQuery:
    """A parsed list request."""

    filters: tuple[FilterTerm, ...] = ()
    sort: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    offset: int = 0
    limit: int = DEFAULT_PAGE_LIMIT
    include: tuple[str, ...] = ()
    flags: Mapping[str, str] = field(default_factory=dict)


def parse_datetime(text: str) -> datetime:
    """An ISO-8601 instant; a ``+`` that the query string decoded to a space is put back."""
    value = datetime.fromisoformat(text.strip().replace(" ", "+").replace("Z", "+00:00").replace("z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_KIND_WORDING = {"datetime": "a valid ISO 8601 date", "number": "a number", "boolean": "a boolean"}
_PARSERS: dict[str, Any] = {
    "datetime": parse_datetime,
    "number": float,
    "boolean": lambda raw: {"true": True, "false": False}[raw.lower()],
}


def _operand(kind: str, op: str, raw: str, attribute: str, schema: ResourceSchema) -> Any:
    """The operand parsed for the attribute's kind; upstream's 403 wording when it cannot be."""
    invalid = f"Filter value for key '{attribute}' is invalid:"
    symbol = _SYMBOLS.get(op, "")
    if kind == "object":
        raise InvalidFilter(f"{invalid} {attribute} cannot be filtered")
    if op in _STRING_ONLY and kind not in ("string", "enum", "id"):
        raise InvalidFilter(f"{invalid} operator {symbol} can only be applied to string attributes")
    if op in ("gt", "lt") and kind not in _ORDERED:
        raise InvalidFilter(f"{invalid} operator {symbol} cannot be applied to {kind} attributes")
    if kind in _PARSERS:
        try:
            return _PARSERS[kind](raw)
        except (ValueError, KeyError) as exc:
            raise InvalidFilter(f'{invalid} "{raw}" must be {_KIND_WORDING[kind]}') from exc
    if kind == "enum" and op in ("eq", "neq"):
        allowed = schema.enums.get(attribute, ())
        if raw not in allowed:
            raise InvalidFilter(f'{invalid} "{raw}" must be one of {list(allowed)}')
    return raw.lower() if kind == "id" else raw


def _condition(kind: str, element: str, attribute: str, schema: ResourceSchema) -> Condition:
    if element.startswith(NULL_SYMBOL):
        flag = element[len(NULL_SYMBOL) :].lower()
        if flag not in ("true", "false"):
            raise InvalidFilter(f"Filter value for key '{attribute}' is invalid: null test must be true or false")
        return Condition("null" if flag == "true" else "notnull")
    op = _PREFIX_OPERATORS.get(element[:1])
    raw = element[1:] if op else element
    if op is None:
        op = "eq"
    if raw == "":
        raise InvalidFilter(f"Filter value for key '{attribute}' is invalid: invalid or empty filter element")
    return Condition(op, _operand(kind, op, raw, attribute, schema))


def _filter_term(path: list[str], value: str, schema: ResourceSchema, schemas: Schemas) -> FilterTerm:
    """Validate the path against the schemas (upstream's 403 "Invalid filter") and parse the value."""
    current = schema
    resolved: list[str] = []
    for index, segment in enumerate(path):
        last = index == len(path) - 1
        if segment == "id" and last:
            return _term([*resolved, "id"], "id", value, current)
        if segment in current.attributes:
            if not last:
                raise InvalidFilter(f"{current.type} attribute '{segment}' has no fields to filter on")
            return _term([*resolved, segment], current.attributes[segment], value, current)
        relationship = current.relationships.get(segment)
        if relationship is None:
            raise InvalidFilter(f"{current.type} do not have attribute or relationship '{segment}'")
        resolved.append(segment)  # the relationships crossed so far
        if len(resolved) > MAX_RELATIONSHIP_LEVELS:
            raise InvalidFilter(f"Filters reach at most {MAX_RELATIONSHIP_LEVELS} relationships deep")
        if last:  # filter[organization]=<id> filters on the related id
            return _term([*resolved, "id"], "id", value, current)
        current = schemas.get(relationship.target, ResourceSchema(relationship.target, {}))
    raise InvalidFilter("invalid or empty filter element")


def _term(path: list[str], kind: str, value: str, schema: ResourceSchema) -> FilterTerm:
    elements = value.split(",") if value else [""]
    conditions = tuple(_condition(kind, element, path[-1], schema) for element in elements)
    return FilterTerm(tuple(path), kind, conditions)


def _bracketed(key: str) -> tuple[str, list[str]] | None:
    match = _BRACKETS.match(key)
    if not match:
        return None
    return match.group(1), re.findall(r"\[([^\[\]]*)\]", match.group(2))


def _non_negative_int(name: str, raw: str) -> int:
    try:
        number = int(raw)
    except ValueError as exc:
        raise ParamValidationFailed(f"\"{name}\" must be a number") from exc
    if number < 0:
        raise ParamValidationFailed(f"\"{name}\" must be larger than or equal to 0")
    return number


def parse_list_query(params: Sequence[tuple[str, str]], schema: ResourceSchema, schemas: Schemas) -> ListQuery:
    """Parse and validate a list request's query parameters for ``schema``'s type.

    Raises:
        InvalidFilter: a filter names an unknown attribute/relationship or has an unusable value.
        ParamValidationFailed: bad ``page``, ``sort`` or ``include``.
        NotEmulated: sparse fieldsets or nested includes.
    """
    filters: list[FilterTerm] = []
    sort: list[tuple[str, bool]] = []
    include: list[str] = []
    flags: dict[str, str] = {}
    offset, limit = 0, DEFAULT_PAGE_LIMIT
    for key, value in params:
        if key == "sort":
            sort.extend(_sort_fields(value, schema))
            continue
        if key == "include":
            include.extend(_includes(value, schema))
            continue
        parsed = _bracketed(key)
        if parsed is None:
            continue  # unknown plain parameters are ignored, as by the real server
        family, path = parsed
        if family == "filter":
            filters.append(_filter_term(path, value, schema, schemas))
        elif family == "page":
            if path == ["offset"]:
                offset = _non_negative_int("page[offset]", value)
            elif path == ["limit"]:
                limit = _non_negative_int("page[limit]", value)
            else:
                raise ParamValidationFailed(f"\"{'.'.join(path)}\" is not allowed in page")
        elif family == "flag" and len(path) == 1:
            flags[path[0]] = value
        elif family == "fields":
            raise NotEmulated("Sparse fieldsets (fields[...]) are not emulated by the sandbox.")
    return ListQuery(tuple(filters), tuple(sort), offset, limit, tuple(include), flags)


def _sort_fields(value: str, schema: ResourceSchema) -> list[tuple[str, bool]]:
    fields: list[tuple[str, bool]] = []
    for item in value.split(","):
        item = item.strip()  # a literal "+" arrives as a space
        descending = item.startswith("-")
        name = item.lstrip("+-").strip()
        kind = "id" if name == "id" else schema.attributes.get(name)
        if kind is None or kind == "object":
            raise ParamValidationFailed(f"{schema.type} do not have a sortable attribute '{name}'")
        fields.append((name, descending))
    return fields


def _includes(value: str, schema: ResourceSchema) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    for name in names:
        if "." in name:
            raise NotEmulated(f"Nested includes ('{name}') are not emulated by the sandbox.")
        if name not in schema.relationships:
            raise InvalidInclusion(f"{schema.type} do not have relationship '{name}'")
    return names


# --- evaluation ----------------------------------------------------------------------------------
def _path_values(record: Record, path: tuple[str, ...], resolve: Resolver) -> list[Any]:
    """The values at the end of ``path``: relationship hops, then an attribute or ``id``."""
    current = [record]
    for index, relationship in enumerate(path[:-1]):
        refs = [ref for item in current for ref in item.refs(relationship)]
        if index == len(path) - 2 and path[-1] == "id":
            return [ref.id.lower() for ref in refs] or [None]  # ids need no lookup
        current = [r for r in (resolve(ref) for ref in refs) if r is not None]
    final = path[-1]
    values = [item.id.lower() if final == "id" else _as_shown(item.attributes.get(final)) for item in current]
    return values or [None]


def _as_shown(value: Any) -> Any:
    """A value with the precision the API shows (milliseconds), so ``>T`` excludes the object T came from."""
    if isinstance(value, datetime):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


def _matches(condition: Condition, value: Any) -> bool:
    op, operand = condition.op, condition.value
    if op == "null":
        return value is None
    if op == "notnull":
        return value is not None
    if value is None:
        return False  # SQL semantics: a comparison with NULL is never true, "!x" included
    if op == "eq":
        return value == operand
    if op == "neq":
        return value != operand
    if op == "gt":
        return value > operand
    if op == "lt":
        return value < operand
    text = str(value)
    if op == "contains":
        return operand.lower() in text.lower()
    if op == "startswith":
        return text.startswith(operand)
    return text.lower() == operand.lower()  # ieq


def apply_filters(records: list[Record], filters: Sequence[FilterTerm], resolve: Resolver) -> list[Record]:
    """Keep records matching every term (a term matches when any alternative matches any value)."""
    kept = []
    for record in records:
        if all(
            any(_matches(c, v) for c in term.any_of for v in _path_values(record, term.path, resolve)) for term in filters
        ):
            kept.append(record)
    return kept


def _sort_value(record: Record, name: str) -> tuple[bool, Any]:
    value = record.id if name == "id" else _as_shown(record.attributes.get(name))
    return (value is None, 0 if value is None else value)


def apply_sort(records: list[Record], sort: Sequence[tuple[str, bool]]) -> list[Record]:
    """Sort by the requested fields (NULLs last ascending, first descending, as Postgres does)."""
    ordered = list(records)
    for name, descending in reversed(sort or (("created_at", False), ("id", False))):
        if name != "id" and not any(name in r.attributes for r in ordered):
            continue
        ordered.sort(key=partial(_sort_value, name=name), reverse=descending)
    return ordered

