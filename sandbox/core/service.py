"""Builds one emulated service's FastAPI app: request ids, faults, the request log, error rendering.

Each service passes a :class:`ServiceErrors` that knows its real error bodies, so a fault or an
unknown path answers in the service's own format (Graph's ``{"error": …}``, Workbench's JSON:API
``errors``, the token endpoint's OAuth error).

Scenario time (``world.advance()``) decides which faults are active and stamps the log's ``at``;
everything a client measures with its own clock is real time: the log's ``received_at``, the
Retry-After sent, the delays of ``slow`` and ``drip``.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, cast

import jwt
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from sandbox.core.connection import request_reset
from sandbox.core.context import current_client_request_id, current_request_id
from sandbox.core.errors import SandboxHTTPError
from sandbox.core.faults import ActiveFault, FaultSpec, ServiceName
from sandbox.core.rate_limits import caller_of
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


def _delay_seconds(value: str | None) -> int | None:
    """A Retry-After in delay-seconds, as every emulated service writes it; None for none (or a date)."""
    return int(value) if value is not None and value.strip().isdecimal() else None


def _http_date(seconds: int) -> str:
    # An HTTP-date has whole seconds; rounding up keeps "wait until the date" at least ``seconds`` long.
    until = datetime.now(UTC) + timedelta(seconds=seconds)
    if until.microsecond:
        until = until.replace(microsecond=0) + timedelta(seconds=1)
    return email.utils.format_datetime(until, usegmt=True)


class _Streamed(Protocol):
    """What ``call_next`` returns: a response whose body is still to be streamed."""

    status_code: int
    body_iterator: AsyncIterable[bytes]


@dataclass
class _Served:
    """The response to send (or to drop), what the log records of it, and whether the client gets it."""

    response: Response
    status: int
    sent: bool = True
    retry_after_s: int | None = None

    @classmethod
    def of(cls, response: Response) -> _Served:
        retry = _delay_seconds(response.headers.get("Retry-After"))
        return cls(response, response.status_code, retry_after_s=retry)


def _refused(spec: FaultSpec, errors: ServiceErrors) -> _Served:
    """throttle, unavailable, outage: the service's own 429/503, Retry-After in the fault's format."""
    retry = _retry_after(spec.retry_after.total_seconds() if spec.retry_after else None)
    error = errors.throttled(retry) if spec.kind == "throttle" else errors.unavailable(retry)
    served = _Served.of(render(error, errors.request_id_header))
    # the service may send a Retry-After of its own choosing (login and Workbench 429s always do)
    if served.retry_after_s is not None and spec.retry_after_format == "http-date":
        served.response.headers["Retry-After"] = _http_date(served.retry_after_s)
    return served


async def _dropped(request: Request, call_next: Callable, spec: FaultSpec) -> _Served:
    """reset: drop the connection, before handling the request or after handling it fully."""
    response = await call_next(request) if spec.after_apply else Response()
    request_reset(request.scope)
    # status 0 says no handler ran; after_apply logs the status the client never saw
    return _Served(response, response.status_code if spec.after_apply else 0, sent=False)


async def _drip(body: bytes, seconds: float, chunks: int) -> AsyncIterator[bytes]:
    size = max(1, math.ceil(len(body) / chunks))
    for start in range(0, max(len(body), 1), size):
        await asyncio.sleep(seconds / chunks)
        yield body[start : start + size]


async def _dripped(request: Request, call_next: Callable, spec: FaultSpec) -> _Served:
    """drip: the handler's own response, its status and headers at once, its body a piece at a time."""
    response = cast(_Streamed, await call_next(request))
    body = b"".join([chunk async for chunk in response.body_iterator])
    # the headers keep the handler's Content-Length, so the client reads until it has all of it
    response.body_iterator = _drip(body, _fault_delay(spec), spec.chunks)
    return _Served.of(cast(Response, response))


def _fault_delay(spec: FaultSpec) -> float:
    return spec.delay.total_seconds() if spec.delay else 1.0


async def _serve(request: Request, call_next: Callable, fault: ActiveFault | None, errors: ServiceErrors) -> _Served:
    spec = fault.spec if fault is not None else None
    if spec is None:
        return _Served.of(await call_next(request))
    if spec.kind == "slow":
        await asyncio.sleep(_fault_delay(spec))
        return _Served.of(await call_next(request))
    if spec.kind == "reset":
        return await _dropped(request, call_next, spec)
    if spec.kind == "drip":
        return await _dripped(request, call_next, spec)
    return _refused(spec, errors)


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
        received_at = datetime.now(UTC)
        rid = str(uuid.uuid4())
        client_rid = request.headers.get("client-request-id")
        current_request_id.set(rid)
        current_client_request_id.set(client_rid)
        path = request.url.path
        token_tenant, token_app = _token_ids(request.headers.get("authorization"))
        tenant_id = tenant_from_path(path) or token_tenant
        now = world.advance()
        admin = path.startswith(ADMIN_PREFIX)
        fault = None if admin else world.faults.match(service, request.method, path, tenant_id, now)
        over = None if admin or fault is not None else world.rate_limits.acquire(
            service, request.method, caller_of(token_app, request.headers.get("authorization")), tenant_id)
        if over is not None:  # the service's own 429, as for a throttle fault
            served = _Served.of(render(errors.throttled(over[1]), errors.request_id_header))
        else:
            served = await _serve(request, call_next, fault, errors)
        response = served.response
        response.headers.setdefault(errors.request_id_header, rid)
        if client_rid:
            response.headers.setdefault("client-request-id", client_rid)
        if not admin:
            world.log.append(
                at=now,
                received_at=received_at,
                service=service,
                method=request.method,
                path=path,
                query=request.url.query,
                status=served.status,
                response_sent=served.sent,
                retry_after_s=served.retry_after_s,
                request_id=rid,
                client_request_id=client_rid,
                tenant_id=getattr(request.state, "tenant_id", None) or tenant_id,
                app_id=getattr(request.state, "app_id", None) or token_app,
                operation=getattr(request.state, "operation", None),
                fault=f"{fault.spec.kind}#{fault.id}" if fault is not None else (f"rate-limit:{over[0].name}" if over is not None else None),
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
