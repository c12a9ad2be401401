"""Builds one emulated service's FastAPI app: request ids, faults, the request log, error rendering.

Each service passes a :class:`ServiceErrors` that knows its real error bodies, so a fault or an
unknown path answers in the service's own format (Graph's ``{"error": …}``, Workbench's JSON:API
``errors``, the token endpoint's OAuth error).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import jwt
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from sandbox.core.context import current_client_request_id, current_request_id
from sandbox.core.errors import SandboxHTTPError
from sandbox.core.faults import ServiceName
from sandbox.core.tokens import bearer_token
from sandbox.core.world import World

ADMIN_PREFIX = "/_sandbox"


class ServiceErrors(Protocol):
    """The error bodies a service answers with for faults and unknown paths."""

    @property
    def request_id_header(self) -> str: ...

    def throttled(self, retry_after_s: int | None) -> SandboxHTTPError: ...

    def unavailable(self, retry_after_s: int | None) -> SandboxHTTPError: ...

    def not_emulated(self, method: str, path: str) -> SandboxHTTPError: ...

    def bad_request(self, message: str) -> SandboxHTTPError: ...


def render(error: SandboxHTTPError, request_id_header: str) -> Response:
    headers = {request_id_header: current_request_id.get(), **error.headers}
    if error.media_type == "text/html":
        return HTMLResponse(error.body, status_code=error.status, headers=headers)
    return JSONResponse(error.body, status_code=error.status, headers=headers, media_type=error.media_type)


def _token_ids(authorization: str | None) -> tuple[str | None, str | None]:
    """``tid`` and ``appid`` of a bearer JWT, unverified: only used to match faults and label the log."""
    token = bearer_token(authorization)
    if not token or token.count(".") != 2:
        return None, None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None, None
    return claims.get("tid"), claims.get("appid")


def _retry_after(fault_seconds: float | None) -> int | None:
    return None if fault_seconds is None else max(0, round(fault_seconds))


def build_service_app(
    world: World,
    service: ServiceName,
    errors: ServiceErrors,
    tenant_from_path: Callable[[str], str | None] = lambda path: None,
) -> FastAPI:
    """A FastAPI app for one service; the caller adds its routes, then calls :func:`finish_service_app`."""
    app = FastAPI(title=f"sandbox {service}", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.world = world
    app.state.service = service

    @app.middleware("http")
    async def _envelope(request: Request, call_next: Callable) -> Response:
        started = time.perf_counter()
        rid = str(uuid.uuid4())
        client_rid = request.headers.get("client-request-id")
        current_request_id.set(rid)
        current_client_request_id.set(client_rid)
        path = request.url.path
        token_tenant, token_app = _token_ids(request.headers.get("authorization"))
        tenant_id = tenant_from_path(path) or token_tenant
        fault_label = None
        now = world.advance()
        response: Response | None = None
        if not path.startswith(ADMIN_PREFIX):
            fault = world.faults.match(service, request.method, path, tenant_id, now)
            if fault is not None:
                fault_label = f"{fault.spec.kind}#{fault.id}"
                retry = _retry_after(fault.spec.retry_after.total_seconds() if fault.spec.retry_after else None)
                if fault.spec.kind == "slow":
                    await asyncio.sleep(fault.spec.delay.total_seconds() if fault.spec.delay else 1.0)
                elif fault.spec.kind == "throttle":
                    response = render(errors.throttled(retry), errors.request_id_header)
                else:
                    response = render(errors.unavailable(retry), errors.request_id_header)
        if response is None:
            response = await call_next(request)
            response.headers.setdefault(errors.request_id_header, rid)
        if client_rid:
            response.headers.setdefault("client-request-id", client_rid)
        if not path.startswith(ADMIN_PREFIX):
            world.log.append(
                at=now,
                service=service,
                method=request.method,
                path=path,
                query=request.url.query,
                status=response.status_code,
                request_id=rid,
                client_request_id=client_rid,
                tenant_id=getattr(request.state, "tenant_id", None) or tenant_id,
                app_id=getattr(request.state, "app_id", None) or token_app,
                operation=getattr(request.state, "operation", None),
                fault=fault_label,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        return response

    @app.exception_handler(SandboxHTTPError)
    async def _sandbox_error(_: Request, exc: SandboxHTTPError) -> Response:
        return render(exc, errors.request_id_header)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return render(errors.bad_request(f"{where}: {first.get('msg')}"), errors.request_id_header)

    return app


def finish_service_app(app: FastAPI, errors: ServiceErrors) -> FastAPI:
    """Add the catch-all that refuses, loudly and in the service's format, any path not emulated."""

    async def not_emulated(request: Request) -> Response:
        return render(errors.not_emulated(request.method, request.url.path), errors.request_id_header)

    app.add_api_route(
        "/{path:path}", not_emulated, methods=["GET", "POST", "PATCH", "PUT", "DELETE"], include_in_schema=False
    )
    return app


async def json_body(request: Request, errors: ServiceErrors) -> dict:
    """The request's JSON object, or the service's 400 for a body that is not one."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        import json

        body = json.loads(raw)
    except ValueError as exc:
        raise errors.bad_request(f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise errors.bad_request("Request body must be a JSON object.")
    return body
