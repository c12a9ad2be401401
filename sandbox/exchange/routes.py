"""Exchange Online admin API on its real path: ``POST /adminapi/{beta|v1.0}/{tenant}/InvokeCommand``.

Parsing and serialising only: who may run what lives in ``auth.py``, the cmdlets in ``cmdlets.py``,
the org's rules in ``models.py``. The tenant in the path may be the GUID or the initial domain.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sandbox.core.service import build_service_app, finish_service_app, json_body
from sandbox.core.world import World
from sandbox.exchange.auth import authorize, check_cmdlet_allowed
from sandbox.exchange.cmdlets import CMDLETS, CmdletCall, CmdletResult, find_cmdlet
from sandbox.exchange.errors import ERRORS, BadRequest, CommandNotFound

_TENANT_IN_PATH = re.compile(r"^/adminapi/(?:beta|v1\.0)/([^/]+)/", re.IGNORECASE)
API_VERSIONS = ("beta", "v1.0")


def _tenant_from_path(path: str) -> str | None:
    match = _TENANT_IN_PATH.match(path)
    return match.group(1).lower() if match else None


def _cmdlet_input(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``CmdletInput.CmdletName`` and ``CmdletInput.Parameters`` of the body, or the 400 for a bad one."""
    cmdlet_input = body.get("CmdletInput")
    if not isinstance(cmdlet_input, dict) or not isinstance(cmdlet_input.get("CmdletName"), str):
        raise BadRequest('The request body must be {"CmdletInput": {"CmdletName": "<cmdlet>", "Parameters": {...}}}.')
    parameters = cmdlet_input.get("Parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest("CmdletInput.Parameters must be a JSON object.")
    return cmdlet_input["CmdletName"].strip(), parameters


def _select(value: list[dict[str, Any]], select: str | None) -> list[dict[str, Any]]:
    """Apply ``$select``: keep the named properties (and their ``@odata.type`` annotations)."""
    if not select:
        return value
    wanted = {name.strip().lower() for name in select.split(",") if name.strip()}
    return [{k: v for k, v in item.items() if k.split("@", 1)[0].lower() in wanted} for item in value]


def _response(request: Request, version: str, tenant_ref: str, result: CmdletResult) -> JSONResponse:
    # The real service names its own host in the context, whatever host the caller used.
    context = f"https://outlook.office365.com/adminapi/{version}/{tenant_ref}/$metadata#Collection(Exchange.GenericHashTable)"
    return JSONResponse(
        {
            "@odata.context": context,
            "adminapi.warnings@odata.type": "#Collection(String)",
            "@adminapi.warnings": result.warnings,
            "value": _select(result.value, request.query_params.get("$select")),
        }
    )


def build_app(world: World, before_catch_all: Any = None) -> FastAPI:
    """The Exchange admin API app; ``before_catch_all(app)`` may add routes ahead of the catch-all."""
    app = build_service_app(world, "exchange", ERRORS, _tenant_from_path)

    @app.post("/adminapi/{version}/{tenant_ref}/InvokeCommand")
    async def invoke_command(version: str, tenant_ref: str, request: Request) -> Any:
        if version.lower() not in API_VERSIONS:
            raise ERRORS.not_emulated(request.method, request.url.path)
        body = await json_body(request, ERRORS)
        name, parameters = _cmdlet_input(body)
        request.state.operation = name
        tenant, claims = authorize(world, request, tenant_ref)
        cmdlet = find_cmdlet(name)
        if cmdlet is None:
            raise CommandNotFound(name)
        request.state.operation = cmdlet
        check_cmdlet_allowed(claims, cmdlet)
        with world.lock:
            now = world.clock.now()
            call = CmdletCall(tenant, parameters, now, request.headers.get("x-anchormailbox"))
            result = CMDLETS[cmdlet](call)
            # The Management Activity feed follows the audit setting (its content depends on it).
            tenant.activity.sync_audit(tenant.exchange.audit_periods())
        return _response(request, version, tenant_ref, result)

    if before_catch_all:
        before_catch_all(app)
    return finish_service_app(app, ERRORS)
