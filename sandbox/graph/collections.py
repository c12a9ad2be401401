"""OData collection responses: ``$filter``, ``$select``, ``$top``, ``$count`` and ``@odata.nextLink`` paging."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Request

from sandbox.graph.errors import RequestBadRequest
from sandbox.graph.odata import parse_filter

DEFAULT_PAGE = 100
MAX_PAGE = 999
CONTEXT_ROOT = "https://graph.microsoft.com/v1.0/$metadata#"


def is_advanced(request: Request) -> bool:
    """Advanced queries need ``ConsistencyLevel: eventual`` and ``$count=true`` together."""
    return request.headers.get("consistencylevel", "").lower() == "eventual" and request.query_params.get("$count", "").lower() == "true"


def select(obj: dict[str, Any], request: Request) -> dict[str, Any]:
    fields = request.query_params.get("$select")
    if not fields:
        return obj
    wanted = {f.strip() for f in fields.split(",") if f.strip()}
    return {k: v for k, v in obj.items() if k in wanted or k == "id"}


def entity(obj: dict[str, Any], context: str, request: Request) -> dict[str, Any]:
    return {"@odata.context": f"{CONTEXT_ROOT}{context}/$entity", **select(obj, request)}


def collection(
    request: Request,
    items: list[dict[str, Any]],
    context: str,
    filterable: set[str],
    filterable_collections: set[str] = frozenset(),  # type: ignore[assignment]
) -> dict[str, Any]:
    """Filter, page and project ``items`` the way Graph answers a list request."""
    params = request.query_params
    advanced = is_advanced(request)
    if params.get("$count", "").lower() == "true" and not advanced:
        raise RequestBadRequest("$count is not currently supported.")
    if "$search" in params and not advanced:
        raise RequestBadRequest(
            "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'"
        )
    if params.get("$filter"):
        predicate = parse_filter(params["$filter"], filterable, filterable_collections, advanced)
        items = [i for i in items if predicate(i)]
    try:
        top = int(params.get("$top", DEFAULT_PAGE))
        skip = int(params.get("$skiptoken", 0))
    except ValueError as exc:
        raise RequestBadRequest("Invalid value for $top or $skiptoken.") from exc
    if not 1 <= top <= MAX_PAGE:
        raise RequestBadRequest(f"Invalid page size specified: '{top}'. Must be between 1 and {MAX_PAGE} inclusive.")
    page = items[skip : skip + top]
    body: dict[str, Any] = {"@odata.context": f"{CONTEXT_ROOT}{context}"}
    if advanced:
        body["@odata.count"] = len(items)
    if skip + top < len(items):
        query = {k: v for k, v in params.items() if k != "$skiptoken"} | {"$skiptoken": str(skip + top)}
        body["@odata.nextLink"] = f"{str(request.base_url).rstrip('/')}{request.url.path}?{urlencode(query)}"
    body["value"] = [select(i, request) for i in page]
    return body
