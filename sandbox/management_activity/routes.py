"""Management Activity API routes on the real paths: ``/api/v1.0/{tenant}/activity/feed/…``.

Parsing and serialising only; the rules live in ``models.py``. Content blobs are served on this
same port at their ``contentUri`` (``…/activity/feed/audit/{contentId}``), which is built from the
sandbox's own base URL. Query parameter names are matched case-insensitively, as ASP.NET does.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.core.service import build_service_app, finish_service_app, json_body
from sandbox.core.world import Tenant, World
from sandbox.management_activity.auth import authorize
from sandbox.management_activity.errors import (
    ERRORS,
    NO_PUBLISHER,
    InvalidNextPage,
    InvalidParameterType,
    InvalidWindow,
    current_call,
)
from sandbox.management_activity.models import Blob, Webhook, canonical_content_type, resolve_window
from sandbox.management_activity.records import blob_records

FEED = "/api/v1.0/{tenant_id}/activity/feed"
PAGE_SIZE = 200  # the real page size is not documented; big enough that normal tenants never page
_TENANT_IN_PATH = re.compile(r"^/api/v1\.0/([^/]+)/", re.IGNORECASE)
# The service's own method names, as AF429 messages show them (GetBlob is the documented one).
_METHODS = (
    ("/subscriptions/start", "StartSubscription"),
    ("/subscriptions/stop", "StopSubscription"),
    ("/subscriptions/list", "ListSubscriptions"),
    ("/subscriptions/content", "ListContent"),
    ("/activity/feed/audit/", "GetBlob"),
)
_NEXT_PAGE = re.compile(r"^(\d{20})R(\d{12})$")


def _tenant_from_path(path: str) -> str | None:
    match = _TENANT_IN_PATH.match(path)
    return match.group(1).lower() if match else None


class _CallNames:
    """ASGI middleware noting the API method and PublisherIdentifier for an AF429 throttling answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            method = next((name for fragment, name in _METHODS if fragment in path.lower()), "Unknown")
            query = dict(re.findall(r"(?:^|&)([^=&]+)=([^&]*)", scope.get("query_string", b"").decode("latin-1")))
            publisher = next((v for k, v in query.items() if k.lower() == "publisheridentifier"), NO_PUBLISHER)
            current_call.set((method, publisher or NO_PUBLISHER))
        await self.app(scope, receive, send)


def _param(request: Request, name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in request.query_params.items() if key.lower() == wanted), None)


def _publisher(request: Request) -> str:
    value = _param(request, "PublisherIdentifier")
    if value is None:
        return NO_PUBLISHER
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise InvalidParameterType("PublisherIdentifier", "guid") from exc


def _time(request: Request, name: str) -> datetime | None:
    """``YYYY-MM-DD``, ``YYYY-MM-DDTHH:MM`` or ``YYYY-MM-DDTHH:MM:SS`` (UTC; fractions and Z tolerated)."""
    value = _param(request, name)
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError as exc:
        raise InvalidParameterType(name, "datetime") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _wire_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def build_app(world: World, before_catch_all: Any = None) -> FastAPI:
    """The Management Activity API app; ``before_catch_all(app)`` may add routes ahead of the catch-all."""
    app = build_service_app(world, "management_activity", ERRORS, _tenant_from_path)
    app.add_middleware(_CallNames)  # added last, so it runs first: the fault check reads what it sets

    def base_url(request: Request) -> str:
        return (world.base_urls.get("management_activity") or str(request.base_url)).rstrip("/")

    def begin(request: Request, tenant_id: str, operation: str) -> tuple[Tenant, dict[str, Any]]:
        request.state.operation = operation
        tenant, claims = authorize(world, request, tenant_id)
        with world.lock:
            tenant.activity.sync_audit(tenant.exchange.audit_periods())
        return tenant, claims

    @app.post(f"{FEED}/subscriptions/start")
    async def start_subscription(tenant_id: str, request: Request) -> Any:
        tenant, claims = begin(request, tenant_id, "subscriptions/start")
        content_type = canonical_content_type(_param(request, "contentType"))
        publisher = _publisher(request)
        body = await json_body(request, ERRORS)
        with world.lock:
            now = world.clock.now()
            webhook = Webhook.from_body(body, now)
            return tenant.activity.start(content_type, webhook, now, str(claims.get("appid", "")), publisher)

    @app.post(f"{FEED}/subscriptions/stop")
    async def stop_subscription(tenant_id: str, request: Request) -> Response:
        tenant, _ = begin(request, tenant_id, "subscriptions/stop")
        content_type = canonical_content_type(_param(request, "contentType"))
        _publisher(request)
        with world.lock:
            tenant.activity.stop(content_type, world.clock.now())
        return Response(status_code=200)

    @app.get(f"{FEED}/subscriptions/list")
    async def list_subscriptions(tenant_id: str, request: Request) -> Any:
        tenant, _ = begin(request, tenant_id, "subscriptions/list")
        _publisher(request)
        with world.lock:
            return tenant.activity.list_subscriptions(world.clock.now())

    @app.get(f"{FEED}/subscriptions/content")
    async def list_content(tenant_id: str, request: Request) -> Any:
        tenant, _ = begin(request, tenant_id, "subscriptions/content")
        content_type = canonical_content_type(_param(request, "contentType"))
        publisher = _param(request, "PublisherIdentifier") and _publisher(request)
        start, end = _time(request, "startTime"), _time(request, "endTime")
        if (start is None) != (end is None):
            raise InvalidWindow()
        with world.lock:
            now = world.clock.now()
            start, end = resolve_window(start, end, now)
            blobs = tenant.activity.content(content_type, start, end, now)
        offset = _page_offset(_param(request, "nextPage"), start)
        page = blobs[offset : offset + PAGE_SIZE]
        base = base_url(request)
        body = [b.to_api(f"{base}/api/v1.0/{tenant.id}/activity/feed/audit/{b.content_id}") for b in page]
        headers = {}
        if offset + PAGE_SIZE < len(blobs):
            query = {"contentType": content_type, "startTime": _wire_time(start), "endTime": _wire_time(end)}
            if publisher:
                query["PublisherIdentifier"] = publisher
            query["nextPage"] = f"{start.strftime('%Y%m%d%H%M%S%f')}R{offset + PAGE_SIZE:012d}"
            headers["NextPageUri"] = f"{base}/api/v1.0/{tenant.id}/activity/feed/subscriptions/content?{urlencode(query)}"
        return JSONResponse(body, headers=headers)

    @app.get(f"{FEED}/audit/{{content_id}}")
    async def get_blob(tenant_id: str, content_id: str, request: Request) -> Any:
        tenant, _ = begin(request, tenant_id, "audit/blob")
        _publisher(request)
        with world.lock:
            blob: Blob = tenant.activity.blob(content_id, world.clock.now())
        return blob_records(tenant.id, tenant.spec.initial_domain, blob.content_type, blob.created, blob.previous)

    if before_catch_all:
        before_catch_all(app)
    return finish_service_app(app, ERRORS)


def _page_offset(next_page: str | None, window_start: datetime) -> int:
    """Where a ``nextPage`` token resumes; AF20031 for one this window did not hand out."""
    if next_page is None:
        return 0
    match = _NEXT_PAGE.match(next_page)
    if match is None or match.group(1) != window_start.strftime("%Y%m%d%H%M%S%f"):
        raise InvalidNextPage(next_page)
    return int(match.group(2))
