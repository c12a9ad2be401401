"""``m365-onboard onboard``: start one onboarding run per tenant, from flags or from a CSV file.

Every row is validated before any run starts, and all problems are reported together, so a file
with one bad row starts nothing and loses nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
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
    """An :class:`OnboardingRequest` from flat values (flags or a CSV row); empty optional values are left out."""
    data: dict[str, Any] = {k: values[k] for k in REQUIRED_COLUMNS if values.get(k) is not None}
    modes = {k: values[k] for k in MODE_COLUMNS if values.get(k)}
    blocks = {field: values[column] for column, field in BLOCK_COLUMNS.items() if values.get(column)}
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
        lines.append(f"{(names or {}).get(field, field)}: {problem['msg'].removeprefix('Value error, ')}")
    return lines


def requests_from_csv(path: Path) -> list[OnboardingRequest]:
    """Every row of ``path`` as a request; raises :class:`InvalidRequests` naming every bad row and field."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel writes a byte-order mark
    except OSError as exc:
        raise InvalidRequests([f"{path}: {exc.strerror}"]) from exc
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    problems = []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing:
        problems.append(f"{path}: missing column(s): {', '.join(missing)} (columns: {', '.join(COLUMNS)})")
    if unknown:
        problems.append(f"{path}: unknown column(s): {', '.join(unknown)} (columns: {', '.join(COLUMNS)})")
    if problems:
        raise InvalidRequests(problems)
    found: list[OnboardingRequest] = []
    first_line_of: dict[str, int] = {}
    for line, row in enumerate(reader, start=2):  # line 1 is the header
        values = {(k or "").strip(): (v or "").strip() or None for k, v in row.items()}
        if not any(values.values()):
            continue  # a blank line
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
