"""``m365-onboard onboard``: start one onboarding run per tenant, from flags or from a CSV file.

Every row is validated before any run starts, and all problems are reported together, so a file
with one bad row starts nothing and loses nothing.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ValidationError

from core.dispatch import sync_result
from core.requests import BlockNames, OnboardingRequest, StepModes
from core.tags import tenant_tag

REQUIRED_COLUMNS = ("tenant_id", "organization_name", "provider_org_id", "customer_contact_email")
MODE_COLUMNS = tuple(StepModes.model_fields)  # optional: apply, guide or plan, one per step whose mode may be forced
BLOCK_COLUMNS = {f"{field}_block": field for field in BlockNames.model_fields}  # optional
COLUMNS = (*REQUIRED_COLUMNS, *MODE_COLUMNS, *BLOCK_COLUMNS)


class InvalidRequests(ValueError):
    """One or more requests are invalid; ``problems`` lists every one, each on its own line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problem(s):\n" + "\n".join(problems))
        self.problems = problems


class StartedRun(BaseModel):
    organization: str
    tenant_id: str
    run_id: UUID
    run_name: str
    link: str | None = None


def build_request(values: dict[str, str | None]) -> OnboardingRequest:
    """An :class:`OnboardingRequest` from flat values (flags or a CSV row); values not given (None) are left out."""
    data: dict[str, Any] = {k: values[k] for k in REQUIRED_COLUMNS if values.get(k) is not None}
    modes = {k: values[k] for k in MODE_COLUMNS if values.get(k) is not None}
    blocks = {field: values[column] for column, field in BLOCK_COLUMNS.items() if values.get(column) is not None}  # an empty flag is refused
    if modes:
        data["modes"] = modes
    if blocks:
        data["blocks"] = blocks
    return OnboardingRequest.model_validate(data)


def describe(error: ValidationError, names: dict[str, str] | None = None) -> list[str]:
    """``field: message`` per problem, with the field named as the user wrote it (a column, or ``names[field]``, e.g. a flag)."""
    lines = []
    for problem in error.errors():
        location = [str(part) for part in problem["loc"]]
        if location[:1] == ["blocks"] and len(location) > 1:
            location = [f"{location[1]}_block"]
        elif location[:1] == ["modes"]:
            location = location[1:]
        field = ".".join(location) or "request"
        message = "unknown field" if problem["type"] == "extra_forbidden" else problem["msg"].removeprefix("Value error, ")
        lines.append(f"{(names or {}).get(field, field)}: {message}")
    return lines


# Byte-order marks and their codecs, longest first (UTF-32 LE's starts with UTF-16 LE's). Excel's
# "CSV UTF-8" starts with UTF-8's mark, its "Unicode text" with UTF-16 LE's (and is tab-separated).
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Excel separates with a comma, with a semicolon where the decimal point is a comma, with a tab in
# "Unicode text"; no column name holds any of them, so the header says which one the file uses.
DELIMITERS = {",": "a comma", ";": "a semicolon", "\t": "a tab"}


def read_csv_text(path: Path) -> str:
    """The text of ``path``: UTF-8 (Excel's byte-order mark or not), or UTF-16/32 with a byte-order mark."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidRequests([f"{path}: {exc.strerror}"]) from exc
    encoding = next((codec for bom, codec in BOMS if data.startswith(bom)), "utf-8-sig")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InvalidRequests([f"{path}: not {encoding.removesuffix('-sig').upper()} text (byte {exc.start + 1} is 0x{data[exc.start]:02x}): "
                               "save it as CSV UTF-8, or as Unicode text (UTF-16 with a byte-order mark)"]) from exc
    if "\x00" in text:  # what UTF-16 without a byte-order mark looks like when read as UTF-8
        raise InvalidRequests([f"{path}: has NUL characters, as UTF-16 without a byte-order mark has: save it as CSV UTF-8, "
                               "or as Unicode text (UTF-16 with a byte-order mark)"])
    return text


def delimiter_of(text: str) -> str:
    header = text.lstrip("\r\n").partition("\n")[0]
    return max(DELIMITERS, key=header.count)  # a comma when the header has one column


def csv_rows(path: Path, text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """``(line, cells)`` per row of ``text``, ``line`` being where the row starts: a quoted cell may hold line breaks."""
    # newline="": a line break inside quotes stays in its cell; strict: a stray or unclosed quote is an error, not a merged row
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    line = 1
    try:
        for cells in reader:
            yield line, cells
            line = reader.line_num + 1
    except csv.Error as exc:  # a quote left open, text after a closing quote, a cell over the field size limit
        raise InvalidRequests([f"{path.name} line {line}: {exc} (a value in double quotes must end with a double quote, "
                               "and a double quote inside it is written twice)"]) from exc


def header_problems(path: Path, header: list[str]) -> list[str]:
    """What is wrong with the header row: missing, unknown or repeated columns."""
    named = [h for h in header if h]
    problems = []
    missing = [c for c in REQUIRED_COLUMNS if c not in named]
    unknown = [c for c in named if c not in COLUMNS]
    repeated = sorted({c for c in named if named.count(c) > 1}, key=named.index)
    if missing:
        problems.append(f"{path}: missing column(s): {', '.join(missing)} (columns: {', '.join(COLUMNS)})")
    if unknown:
        problems.append(f"{path}: unknown column(s): {', '.join(unknown)} (columns: {', '.join(COLUMNS)})")
    for column in repeated:  # csv.DictReader would silently keep the last one
        positions = [str(i + 1) for i, h in enumerate(header) if h == column]
        problems.append(f"{path}: column {column} is in the header {len(positions)} times (columns {', '.join(positions)}): keep one")
    return problems


def row_values(header: list[str], cells: list[str], delimiter: str) -> tuple[dict[str, str | None], str | None]:
    """The row's values by column (empty ones None), or why the row does not fit the header.

    A cell under no named column (past the header's end, or under an empty header cell as Excel
    leaves after a trailing separator) is refused unless empty: it is most often a name holding
    the separator, unquoted, which shifted every cell after it.
    """
    stray = next((i for i, cell in enumerate(cells) if cell.strip() and (i >= len(header) or not header[i])), None)
    if stray is not None:
        return {}, f"cell {stray + 1}: the header has no column {stray + 1} (a value that holds {DELIMITERS[delimiter]} must be in double quotes)"
    return {column: (cells[i].strip() if i < len(cells) else "") or None for i, column in enumerate(header) if column}, None


def requests_from_csv(path: Path) -> list[OnboardingRequest]:
    """Every row of ``path`` as a request; raises :class:`InvalidRequests` naming every bad row and field."""
    text = read_csv_text(path)
    delimiter = delimiter_of(text)
    rows = csv_rows(path, text, delimiter)
    first = next(((line, cells) for line, cells in rows if any(cell.strip() for cell in cells)), None)  # blank lines before the header
    header = [h.strip() for h in first[1]] if first else []
    problems = header_problems(path, header)
    if problems:
        raise InvalidRequests(problems)
    found: list[OnboardingRequest] = []
    first_line_of: dict[str, int] = {}
    for line, cells in rows:
        if not any(cell.strip() for cell in cells):
            continue  # a blank line
        values, misfit = row_values(header, cells, delimiter)
        if misfit:
            problems.append(f"{path.name} line {line}: {misfit}")
            continue
        try:
            request = build_request(values)
        except ValidationError as exc:
            problems.extend(f"{path.name} line {line}: {p}" for p in describe(exc))
            continue
        if request.tenant_id in first_line_of:
            problems.append(f"{path.name} line {line}: tenant_id {request.tenant_id} is already on line {first_line_of[request.tenant_id]}")
            continue
        first_line_of[request.tenant_id] = line
        found.append(request)
    if problems:
        raise InvalidRequests(problems)
    if not found:
        raise InvalidRequests([f"{path}: no rows"])
    return found


def start_runs(requests: Iterable[OnboardingRequest], deployment: str, ui_url: str | None) -> tuple[list[StartedRun], list[tuple[OnboardingRequest, str]]]:
    """Start one run per request; returns the runs started and the requests that could not be (with why).

    The deployment is looked up first, so a missing deployment starts nothing.
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    with get_client(sync_client=True) as client:
        client.read_deployment_by_name(deployment)  # ObjectNotFound: nothing started
    started, failed = [], []
    for request in requests:
        try:
            run = sync_result(run_deployment(deployment, parameters={"request": request.model_dump(mode="json")}, timeout=0,
                                             tags=[tenant_tag(request.tenant_id)]))
        except Exception as exc:  # the server went away half-way: say which ones were not started
            failed.append((request, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
            continue
        link = f"{ui_url.rstrip('/')}/runs/flow-run/{run.id}" if ui_url else None
        started.append(StartedRun(organization=request.organization_name, tenant_id=request.tenant_id, run_id=run.id, run_name=run.name, link=link))
    return started, failed
