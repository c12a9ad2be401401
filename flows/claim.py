"""One onboarding run per tenant: a run claims its tenant, and a second run for it fails at once.

Claimed on every execution of the run (not cached): a run restarted after a crash claims again.
A Crashed run still holds its tenant, because crash recovery restarts it; a new run for the tenant
is refused until that run is restarted and finishes, or someone deletes it.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterId, FlowRunFilter, FlowRunFilterId, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run as current_flow_run

from core.requests import TenantRequest, normalise_guid
from core.tags import tenant_tag
from flows.errors import AlreadyOnboarding
from tasks.caching import ORCHESTRATION_RETRIES

ACTIVE = [StateType.RUNNING, StateType.PENDING, StateType.PAUSED, StateType.SCHEDULED, StateType.CANCELLING, StateType.CRASHED]
PAGE = 200  # the API pages flow runs at 200


def canonical_tenant(value: object) -> str | None:
    """A tenant id as runs' parameters hold it ({GUID}, upper case, no hyphens) in one form; None if it is none."""
    try:
        return normalise_guid(str(value))  # the request model's own normal form
    except ValueError:
        return None


@task(name="claim_tenant", cache_policy=NO_CACHE, **ORCHESTRATION_RETRIES)
def claim_tenant(request: TenantRequest) -> str:
    """Tag this run with the tenant, and refuse to go on while an earlier run for it is active.

    Runs are matched on their parameters, not on tags, because a run that has not started yet has
    no tag; the earliest active run keeps the tenant, so two runs started together never both go on.
    """
    run_id = current_flow_run.id
    tag = tenant_tag(request.tenant_id)
    with get_client(sync_client=True) as client:
        this = client.read_flow_run(run_id)
        client.update_flow_run(run_id, tags=sorted({*this.tags, tag}))
        active: list[Any] = []
        while True:
            page = client.read_flow_runs(
                flow_filter=FlowFilter(id=FlowFilterId(any_=[this.flow_id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE)),
                    id=FlowRunFilterId(not_any_=[run_id]),
                ),
                limit=PAGE,
                offset=len(active),
            )
            active.extend(page)
            if len(page) < PAGE:
                break
    tenant = canonical_tenant(request.tenant_id)
    earlier = [
        r
        for r in active
        if canonical_tenant((r.parameters.get("request") or {}).get("tenant_id", "")) == tenant
        and (r.created, str(r.id)) < (this.created, str(this.id))
    ]
    if earlier:
        first = earlier[0]
        crashed = first.state is not None and first.state.type == StateType.CRASHED
        raise AlreadyOnboarding(
            f"Tenant {request.tenant_id} is already being onboarded by run {first.name} ({first.id})"
            + (", which Crashed and is restarted by crash recovery" if crashed else "") + ".",
            next_action=f"Wait for that run, or delete it (prefect flow-run delete {first.id}) and start again." if crashed else None,
        )
    return tag
