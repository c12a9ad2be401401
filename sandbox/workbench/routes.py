"""Workbench API v2 routes on the real paths. Parsing and serialising only; rules live in ``models.py``.

Emulated: ``GET`` list/by id/related of organizations, security_devices, vendors, vendor_alerts and
expel_alerts; ``POST``/``PATCH``/``DELETE`` of security_devices; the custom ``GET /api/v2/plugins``.
Everything else (other resource types, ``/relationships/`` linkage routes, secrets, login) answers
501 ``ENOTEMULATED``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sandbox.core.service import build_service_app, finish_service_app, json_body
from sandbox.core.world import World
from sandbox.workbench.errors import ERRORS, MEDIA_TYPE, Conflict, Forbidden, InvalidResource
from sandbox.workbench.jsonapi import list_document, single_document
from sandbox.workbench.models import ApiKeyInfo
from sandbox.workbench.query import parse_list_query
from sandbox.workbench.schemas import PLUGINS, SCHEMAS
from sandbox.workbench.views import LISTABLE, OrgView

API = "/api/v2"
DEVICES = "security_devices"


def _document(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _api_root(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}{API}"


def _singular(resource_type: str) -> str:
    return resource_type.removesuffix("s")


def _resource_body(body: dict[str, Any], resource_id: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``data.attributes`` and ``data.relationships`` of a write, after the JSON:API envelope checks."""
    data = body.get("data")
    if not isinstance(data, dict):
        raise Forbidden('Missing "data" - have you sent the right http headers?', title="Request validation failed")
    if "type" not in data:
        raise InvalidResource("data.type is required")
    if data["type"] != DEVICES:
        raise Conflict(f"data.type '{data['type']}' does not match the endpoint's type '{DEVICES}'")
    if resource_id is not None and "id" in data and str(data["id"]).lower() != resource_id.lower():
        raise Conflict(f"data.id '{data['id']}' does not match the id in the URL '{resource_id}'")
    attributes = data.get("attributes") or {}
    relationships = data.get("relationships") or {}
    if not isinstance(attributes, dict):
        raise InvalidResource("data.attributes must be an object")
    if not isinstance(relationships, dict):
        raise InvalidResource("data.relationships must be an object")
    return attributes, relationships


def build_app(world: World) -> FastAPI:
    """The Workbench app; ``world.workbench`` is looked up per request because a reset replaces it."""
    app = build_service_app(world, "workbench", ERRORS)

    def authenticate(request: Request, operation: str) -> ApiKeyInfo:
        request.state.operation = operation
        key = world.workbench.authenticate(request.headers.get("authorization"))
        request.state.app_id = key.name
        return key

    def known_type(request: Request, resource_type: str) -> None:
        if resource_type not in LISTABLE:
            raise ERRORS.not_emulated(request.method, request.url.path)

    # --- custom routes ----------------------------------------------------------------------------
    @app.get(f"{API}/plugins")
    async def list_plugins(request: Request) -> Response:
        authenticate(request, "list_plugins")
        params = request.query_params.multi_items()
        query = parse_list_query(params, PLUGINS, SCHEMAS)
        with world.lock:
            records = [p.to_record() for p in world.workbench.plugins.values()]
        root = _api_root(request)
        return _document(list_document(records, query, SCHEMAS, lambda ref: None, root, f"{root}/plugins", params))

    # --- security device writes -----------------------------------------------------------------------
    @app.post(f"{API}/{DEVICES}")
    async def create_security_device(request: Request) -> Response:
        key = authenticate(request, "create_security_device")
        attributes, relationships = _resource_body(await json_body(request, ERRORS))
        now = world.clock.now()
        with world.lock:
            device = world.workbench.create_device(key, attributes, relationships, now)
            request.state.tenant_id = device.tenant_id
            view = world.workbench.view(key, now)
            document = single_document(view.get(DEVICES, device.id), SCHEMAS, view.resolve, _api_root(request))
        return _document(document, 201, {"Location": document["links"]["self"]})

    @app.patch(f"{API}/{DEVICES}/{{device_id}}")
    async def update_security_device(device_id: str, request: Request) -> Response:
        key = authenticate(request, "update_security_device")
        attributes, relationships = _resource_body(await json_body(request, ERRORS), device_id)
        now = world.clock.now()
        with world.lock:
            device = world.workbench.update_device(key, device_id, attributes, relationships, now)
            request.state.tenant_id = device.tenant_id
            view = world.workbench.view(key, now)
            document = single_document(view.get(DEVICES, device.id), SCHEMAS, view.resolve, _api_root(request))
        return _document(document)

    @app.delete(f"{API}/{DEVICES}/{{device_id}}")
    async def delete_security_device(device_id: str, request: Request) -> Response:
        key = authenticate(request, "delete_security_device")
        with world.lock:
            world.workbench.delete_device(key, device_id, world.clock.now())
            request.state.tenant_id = world.workbench.devices[device_id.lower()].tenant_id
        return Response(status_code=204)

    # --- generic reads ------------------------------------------------------------------------------
    def read_view(request: Request, operation: str) -> tuple[OrgView, str]:
        key = authenticate(request, operation)
        return world.workbench.view(key, world.clock.now()), _api_root(request)

    @app.get(f"{API}/{{resource_type}}")
    async def list_resources(resource_type: str, request: Request) -> Response:
        known_type(request, resource_type)
        params = request.query_params.multi_items()
        with world.lock:
            view, root = read_view(request, f"list_{resource_type}")
            query = parse_list_query(params, SCHEMAS[resource_type], SCHEMAS)
            records = view.records(resource_type)
            document = list_document(records, query, SCHEMAS, view.resolve, root, f"{root}/{resource_type}", params)
        return _document(document)

    @app.get(f"{API}/{{resource_type}}/{{resource_id}}")
    async def get_resource(resource_type: str, resource_id: str, request: Request) -> Response:
        known_type(request, resource_type)
        with world.lock:
            view, root = read_view(request, f"get_{_singular(resource_type)}")
            query = parse_list_query(request.query_params.multi_items(), SCHEMAS[resource_type], SCHEMAS)
            record = view.get(resource_type, resource_id)
            if resource_type == DEVICES:
                request.state.tenant_id = record.attributes["device_spec"].get("tenant_id")
            document = single_document(record, SCHEMAS, view.resolve, root, query.include)
        return _document(document)

    @app.get(f"{API}/{{resource_type}}/{{resource_id}}/{{relationship}}")
    async def get_related(resource_type: str, resource_id: str, relationship: str, request: Request) -> Response:
        known_type(request, resource_type)
        schema = SCHEMAS[resource_type]
        if relationship not in schema.relationships:
            raise ERRORS.not_emulated(request.method, request.url.path)
        target = schema.relationships[relationship]
        params = request.query_params.multi_items()
        with world.lock:
            view, root = read_view(request, f"get_{_singular(resource_type)}_{relationship}")
            refs = view.get(resource_type, resource_id).refs(relationship)
            related = [r for r in (view.resolve(ref) for ref in refs) if r is not None]
            if not target.many:
                if not related:
                    return _document({"jsonapi": {"version": "1.0"}, "meta": {}, "links": {"self": str(request.url)}, "data": None})
                return _document(single_document(related[0], SCHEMAS, view.resolve, root))
            query = parse_list_query(params, SCHEMAS[target.target], SCHEMAS)
            url = f"{root}/{resource_type}/{resource_id}/{relationship}"
            document = list_document(related, query, SCHEMAS, view.resolve, root, url, params)
        return _document(document)

    return finish_service_app(app, ERRORS)
