"""JSON:API documents as Workbench returns them: resource objects, list and single documents, page links.

Shapes follow upstream ``responseHelper.js`` and ``pagination.js`` (reference §2b, §2d): resource
objects carry ``links.self`` and per-relationship ``links``/``meta`` (to-one linkage in ``data``,
to-many linkage left out); lists carry ``meta.page.{offset,limit,total}`` and ``links.next`` only
while more remain.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sandbox.workbench.query import ListQuery, apply_filters, apply_sort
from sandbox.workbench.resources import Record, Ref, Resolver, ResourceSchema, Schemas


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def resource_object(record: Record, schema: ResourceSchema, api_root: str) -> dict[str, Any]:
    """A resource object with ``links.self`` and, per relationship, links, meta and to-one linkage."""
    self_url = f"{api_root}/{record.type}/{record.id}"
    relationships: dict[str, Any] = {}
    for name, relationship in schema.relationships.items():
        entry: dict[str, Any] = {
            "links": {"self": f"{self_url}/relationships/{name}", "related": f"{self_url}/{name}"},
            "meta": {"relation": "primary", "readOnly": relationship.many},
        }
        if not relationship.many:  # to-many linkage is left out, as Workbench often does (reference §2b)
            linkage = record.relationships.get(name)
            entry["data"] = linkage.to_json() if isinstance(linkage, Ref) else None
        relationships[name] = entry
    return {
        "type": record.type,
        "id": record.id,
        "attributes": _json_value(record.attributes),
        "links": {"self": self_url},
        "relationships": relationships,
    }


def _included(records: list[Record], include: Sequence[str], schemas: Schemas, resolve: Resolver, api_root: str) -> list[dict[str, Any]]:
    seen: dict[Ref, dict[str, Any]] = {}
    for record in records:
        for name in include:
            for ref in record.refs(name):
                related = resolve(ref) if ref not in seen else None
                if related is not None:
                    seen[ref] = resource_object(related, schemas[related.type], api_root)
    return list(seen.values())


def _page_links(url: str, params: Sequence[tuple[str, str]], offset: int, limit: int, total: int) -> dict[str, str]:
    """``first``/``prev``/``next``/``last`` as upstream ``pagination.js`` builds them."""
    if limit == 0 or (offset == 0 and offset + limit >= total):
        return {}
    others = [(k, v) for k, v in params if k != "page[offset]"]

    def at(new_offset: int) -> str:
        return f"{url}?{urlencode([*others, ('page[offset]', str(new_offset))], safe='[]')}"

    links: dict[str, str] = {}
    if offset > 0:
        links["first"] = at(0)
        links["prev"] = at(max(offset - limit, 0))
    if offset + limit < total:
        last = (total // limit) * limit
        links["last"] = at(last - limit if last == total else last)
        links["next"] = at(offset + limit)
    return links


def list_document(
    records: list[Record],
    query: ListQuery,
    schemas: Schemas,
    resolve: Resolver,
    api_root: str,
    url: str,
    params: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """Filter, sort and page ``records`` into a top-level list document."""
    selected = apply_sort(apply_filters(records, query.filters, resolve), query.sort)
    page = selected[query.offset : query.offset + query.limit]
    self_link = f"{url}?{urlencode(list(params), safe='[]')}" if params else url
    document: dict[str, Any] = {
        "jsonapi": {"version": "1.0"},
        "meta": {"page": {"offset": query.offset, "limit": query.limit, "total": len(selected)}},
        "links": {"self": self_link, **_page_links(url, params, query.offset, query.limit, len(selected))},
        "data": [resource_object(r, schemas[r.type], api_root) for r in page],
    }
    if query.include:
        document["included"] = _included(page, query.include, schemas, resolve, api_root)
    return document


def single_document(
    record: Record, schemas: Schemas, resolve: Resolver, api_root: str, include: Sequence[str] = ()
) -> dict[str, Any]:
    """A top-level document holding one resource."""
    document: dict[str, Any] = {
        "jsonapi": {"version": "1.0"},
        "meta": {},
        "links": {"self": f"{api_root}/{record.type}/{record.id}"},
        "data": resource_object(record, schemas[record.type], api_root),
    }
    if include:
        document["included"] = _included([record], include, schemas, resolve, api_root)
    return document
