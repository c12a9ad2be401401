"""Where every tenant's onboarding stands, from the Prefect API: its run and that run's step events.

A tenant's active ``onboard-tenant`` run (by its ``tenant:<id>`` tag), else its newest that reached a
step, gives the run state; the ``onboarding.step.*`` events that run emitted give the current step,
what it waits for, since when, until when, and whether it stalled.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.sorting import FlowRunSort
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter
from pydantic import BaseModel, computed_field
from rich.table import Table
from rich.text import Text

from core.tags import TENANT_TAG_PREFIX
from m365_onboarding.terminal import literal
from tasks.catalogue import CATALOGUE

ONBOARDING_FLOW = "onboard-tenant"
HISTORY = timedelta(days=30)  # an onboarding lasts days; older runs are not "where it stands"
PAGE = 200  # the Prefect API's page limit for flow runs
CUSTOMER_WAITS = {w.name.value for w in CATALOGUE.customer_waits()}


class TenantStatus(BaseModel):
    tenant_id: str
    organization: str
    run_name: str
    run_id: UUID
    run_state: str
    current_step: str | None = None  # None once every step completed
    step_state: str | None = None  # started, waiting, stalled, failed
    waiting_for: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    stalled: bool = False
    detail: str | None = None
    link: str | None = None
    steps: dict[str, str] = {}  # every step the run reached -> its latest transition (started, waiting, ...)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def on_customer(self) -> bool:
        """The current step is a wait only the customer's admin can end."""
        return self.current_step in CUSTOMER_WAITS


def _is_final(run: Any) -> bool:
    return run.state is not None and run.state.is_final()


def _runs_by_tenant(client: SyncPrefectClient, since: datetime) -> dict[str, list[Any]]:
    """Each tenant's onboarding runs since ``since``, newest first."""
    runs_of: dict[str, list[Any]] = {}
    offset = 0
    while True:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[ONBOARDING_FLOW])),
                                     sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=PAGE, offset=offset)
        for run in runs:
            tenant = next((t.removeprefix(TENANT_TAG_PREFIX) for t in run.tags if t.startswith(TENANT_TAG_PREFIX)), None)
            started = run.expected_start_time or run.created
            if tenant and (started is None or started >= since):
                runs_of.setdefault(tenant, []).append(run)
        if len(runs) < PAGE:
            return runs_of
        offset += PAGE


def _where_it_stands(runs: list[Any], events_of: dict[str, list[Any]]) -> Any:
    """The active run; else the newest that got as far as a step (a run refused as a duplicate did not)."""
    return (next((r for r in runs if not _is_final(r)), None)
            or next((r for r in runs if events_of.get(str(r.id))), None)
            or runs[0])


def _step_events(client: SyncPrefectClient, since: datetime) -> list[Any]:
    query = EventFilter(occurred=EventOccurredFilter(since=since, until=datetime.now(UTC) + timedelta(minutes=1)),
                        event=EventNameFilter(prefix=["onboarding.step."]), resource=EventResourceFilter(id_prefix=["m365.tenant."]))
    page = client.read_events(filter=query, limit=50)
    events = list(page.events)
    while page.next_page:
        page = client.read_events_page(str(page.next_page))
        events.extend(page.events)
    return sorted(events, key=lambda e: e.occurred)


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _moment(value: Any) -> datetime | None:
    """An event's ``until``; any client of the events API can write one, so a malformed one is no crash for every tenant."""
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def tenant_statuses(client: SyncPrefectClient, ui_url: str | None = None) -> list[TenantStatus]:
    """One line per tenant with an onboarding run in the last 30 days: its active run, else its newest."""
    since = datetime.now(UTC) - HISTORY
    runs_of = _runs_by_tenant(client, since)
    by_run: dict[str, list[Any]] = {}
    for event in _step_events(client, since):
        for related in event.related:
            if related.id.startswith("prefect.flow-run."):
                by_run.setdefault(related.id.removeprefix("prefect.flow-run."), []).append(event)
    statuses = []
    for tenant, runs in runs_of.items():
        run = _where_it_stands(runs, by_run)
        request = (run.parameters or {}).get("request")
        organization = request.get("organization_name") if isinstance(request, dict) else None  # parameters are the API client's to write
        status = TenantStatus(tenant_id=tenant, organization=str(organization or ""), run_name=run.name, run_id=run.id,
                              run_state=run.state.name if run.state else "Unknown",
                              link=f"{ui_url.rstrip('/')}/runs/flow-run/{run.id}" if ui_url else None)
        last: dict[str, Any] = {}  # step -> its latest event
        stalled: set[str] = set()
        waiting_since: dict[str, Any] = {}
        for event in by_run.get(str(run.id), []):
            step = event.resource.get("onboarding.step")
            last[step] = event
            transition = event.event.removeprefix("onboarding.step.")
            if transition == "stalled":
                stalled.add(step)
            elif transition == "waiting":
                waiting_since[step] = event
        status.steps = {step: event.event.removeprefix("onboarding.step.") for step, event in last.items()}
        open_steps = [e for e in last.values() if e.event not in ("onboarding.step.completed", "onboarding.step.planned")]
        if open_steps:
            current = max(open_steps, key=lambda e: e.occurred)
            step = current.resource.get("onboarding.step")
            since_event = waiting_since.get(step, current)
            until = current.payload.get("until")
            status = status.model_copy(update={
                "current_step": step, "step_state": current.event.removeprefix("onboarding.step."),
                "waiting_for": _text(current.payload.get("waiting_for")), "since": since_event.occurred,
                "until": _moment(until), "stalled": step in stalled,
                "detail": _text(current.payload.get("detail")),
            })
        statuses.append(status)
    return sorted(statuses, key=lambda s: s.organization.casefold())


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``3h 5m ago`` or ``2d 4h ago``; ``-`` for no moment."""
    if moment is None:
        return "-"
    minutes = int(((now or datetime.now(UTC)) - moment).total_seconds() // 60)
    return f"{minutes // 1440}d {minutes % 1440 // 60}h ago" if minutes >= 1440 else f"{minutes // 60}h {minutes % 60}m ago"


def status_table(rows: list[TenantStatus], now: datetime | None = None) -> Table:
    """The ``m365-onboard status`` table; every text from the server is shown literally (see :mod:`m365_onboarding.terminal`)."""
    table = Table(title=f"{len(rows)} tenant(s)")
    for column in ("organization", "run", "state", "current step", "waiting for", "since", "stalled"):
        table.add_column(column)
    for r in rows:
        step = f"{r.current_step} ({r.step_state})" if r.current_step else "all steps done"
        table.add_row(literal(r.organization), literal(r.run_name), literal(r.run_state), literal(step), literal(r.waiting_for or "-"),
                      ago(r.since, now), Text("yes", style="red") if r.stalled else "no")
    return table
