"""The ``/_sandbox/`` control plane on the login port: inspect state, read the request log, move the
clock, inject faults, reset. Clearly apart from every emulated path; it exists only in the sandbox.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ValidationError

from sandbox.core.catalog import DIRECTORY_ROLES, RESOURCES, resource_by_key
from sandbox.core.clock import parse_duration
from sandbox.core.faults import FaultSpec
from sandbox.core.world import World


class AdvanceClock(BaseModel):
    by: str


class AdminToken(BaseModel):
    resource: str  # a resource's key: graph, exchange or management_activity


# Who acts when a test plays the customer's Global Administrator in the portal: Microsoft's Entra
# admin center app, so the request log tells the admin's changes from the provider app's.
ADMIN_PORTAL_APP_ID = "c44b4083-3bb0-49c1-b47d-974e53cbdf3c"
ADMIN_TOKEN_LIFETIME_S = 3600


def add_admin_routes(app: FastAPI) -> None:
    world: World = app.state.world

    def _tenant(tenant_id: str) -> Any:
        tenant = world.tenant(tenant_id)
        if tenant is None:
            raise HTTPException(404, f"no tenant {tenant_id} in this scenario")
        return tenant

    @app.get("/_sandbox/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "services": world.base_urls}

    @app.get("/_sandbox/clock")
    async def clock() -> dict[str, Any]:
        return {"now": world.clock.now(), "started_at": world.clock.started_at, "time_scale": world.clock.time_scale}

    @app.post("/_sandbox/clock/advance")
    async def advance(body: AdvanceClock) -> dict[str, Any]:
        try:
            delta = parse_duration(body.by)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        world.clock.advance(delta)
        return {"now": world.advance()}

    @app.get("/_sandbox/tenants")
    async def tenants() -> list[dict[str, Any]]:
        now = world.clock.now()
        with world.lock:
            return jsonable_encoder(
                [
                    {
                        "id": t.id,
                        "displayName": t.spec.display_name,
                        "consent": t.consent.status,
                        "auditActive": t.exchange.audit_active(now),
                    }
                    for t in world.tenants.values()
                ]
            )

    @app.get("/_sandbox/tenants/{tenant_id}")
    async def tenant_state(tenant_id: str) -> Any:
        now = world.clock.now()
        with world.lock:
            return jsonable_encoder(world.tenant_snapshot(_tenant(tenant_id), now))

    @app.post("/_sandbox/tenants/{tenant_id}/admin-token")
    async def admin_token(tenant_id: str, body: AdminToken) -> dict[str, Any]:
        """A token for the tenant's Global Administrator, as the portal acts for them: every app role of the resource.

        Lets a test play the customer's admin doing what guide mode asks (invite, assign a role,
        add a partner, turn on the audit log) through the same APIs, whatever the provider's app may do.
        """
        try:
            resource = resource_by_key(body.resource)
        except KeyError:
            raise HTTPException(400, f"resource must be one of {[r.key for r in RESOURCES]}") from None
        tenant = _tenant(tenant_id)
        admin = f"sandbox-global-admin-{tenant.id}"
        token = world.signer.issue(
            {"aud": resource.audience, "tid": tenant.id, "appid": ADMIN_PORTAL_APP_ID, "idp": f"https://sts.windows.net/{tenant.id}/",
             "oid": admin, "sub": admin, "roles": sorted(resource.app_roles), "wids": [DIRECTORY_ROLES["Global Administrator"]]},
            issuer=f"https://sts.windows.net/{tenant.id}/", lifetime_s=ADMIN_TOKEN_LIFETIME_S,
        )
        return {"access_token": token, "token_type": "Bearer", "expires_in": ADMIN_TOKEN_LIFETIME_S}

    @app.get("/_sandbox/workbench")
    async def workbench_state() -> Any:
        with world.lock:
            return jsonable_encoder(world.workbench.snapshot(world.clock.now()))

    @app.get("/_sandbox/requests")
    async def requests_log(
        service: str | None = None,
        method: str | None = None,
        tenant: str | None = None,
        path_contains: str | None = None,
        since: int = 0,
    ) -> Any:
        entries = world.log.query(service, method, tenant, path_contains, since)
        return jsonable_encoder({"last_seq": world.log.last_seq, "requests": entries})

    @app.get("/_sandbox/faults")
    async def faults() -> Any:
        return jsonable_encoder(world.faults.list())

    @app.post("/_sandbox/faults", status_code=201)
    async def add_fault(request: Request) -> Any:
        try:
            spec = FaultSpec.model_validate(await request.json())
        except (ValidationError, ValueError) as exc:
            raise HTTPException(400, f"invalid fault: {exc}") from exc
        return jsonable_encoder(world.faults.add(spec, world.clock.now()))

    @app.delete("/_sandbox/faults")
    async def clear_faults() -> dict[str, int]:
        return {"removed": world.faults.remove(None)}

    @app.delete("/_sandbox/faults/{fault_id}")
    async def remove_fault(fault_id: int) -> dict[str, int]:
        removed = world.faults.remove(fault_id)
        if not removed:
            raise HTTPException(404, f"no fault {fault_id}")
        return {"removed": removed}

    @app.post("/_sandbox/reset")
    async def reset() -> dict[str, str]:
        world.reset()
        return {"status": "reset"}

    @app.get("/_sandbox/consent-landing", response_class=HTMLResponse)
    async def consent_landing(request: Request) -> str:
        """Default redirect URI of the sandbox app: shows what the consent redirect carried."""
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in request.query_params.items()
        )
        return f"<!doctype html><title>Consent result</title><h1>Consent result</h1><table>{rows}</table>"
