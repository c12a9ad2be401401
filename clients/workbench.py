"""Expel Workbench API v2: the operations onboarding uses, one method each, typed results.

JSON:API over HTTPS with a service-account API key (``Authorization: Bearer <key>``). Lists follow
``links.next`` under a deterministic sort; errors keep the status and the JSON:API ``errors[]``
(``error.errors``); a POST is never retried (:mod:`clients.http`), so a failed create must be
followed by a lookup. Reads work with any key; writes need an Organization Admin key that is not
read-only (reference §1a). :meth:`WorkbenchClient.translate` is the one place errors get a meaning.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any, Self

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator

from clients.errors import (
    ApiError,
    BadRequest,
    DeviceRejected,
    PermissionDenied,
    PluginNotFound,
    Unauthorized,
    WorkbenchOrganizationMismatch,
    WorkbenchRoleRequired,
)
from clients.http import ApiClient, ErrorDetails

logger = logging.getLogger("m365_onboarding.workbench")

API = "/api/v2"
MEDIA_TYPE = "application/vnd.api+json"
PLAIN_JSON = "application/json"
DEFAULT_SORT = [("sort", "+created_at"), ("sort", "+id")]  # pyexclient's default; stable across pages
RAW_STATUS = ("flag[raw_status]", "true")  # the device's own status, not its Assembler's (reference §3a)
WRITE_OPERATIONS = frozenset({"create_security_device", "update_security_device", "delete_security_device"})
DEVICE_WRITES = {"create_security_device": "create the security device", "update_security_device": "update the security device"}
NESTED_ALERT_FILTER = "filter[vendor_alerts][security_device][id]"


def _refuses_filter(error: ApiError) -> bool:
    """Whether Workbench refused a filter it does not support (a 400, or a 403 titled "Invalid filter")."""
    return isinstance(error, BadRequest) or any(e.get("title") == "Invalid filter" for e in error.errors)


# --- models ------------------------------------------------------------------------------------------
class WorkbenchModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> Self:
        """Flatten a JSON:API resource object: id, attributes, and ``<name>_id`` for to-one linkage."""
        links = {f"{name}_id": (rel.get("data") or {}).get("id") for name, rel in (resource.get("relationships") or {}).items()
                 if isinstance(rel, dict) and isinstance(rel.get("data"), dict)}
        return cls.model_validate({"id": resource.get("id"), **(resource.get("attributes") or {}), **links})


class Organization(WorkbenchModel):
    id: str
    name: str


class Plugin(WorkbenchModel):
    """An integration devices are created from; ``device_spec_json`` is the JSON Schema of ``device_spec``."""

    plugin_slug: str
    display_name: str
    vendor_name: str | None = None
    device_spec_json: dict[str, Any] = Field(default_factory=dict)
    active: bool = True
    internal_only: bool = False

    @property
    def required_spec_keys(self) -> list[str]:
        return list(self.device_spec_json.get("required") or [])

    @property
    def spec_keys(self) -> list[str] | None:
        """The keys the schema declares, or None when it declares none (anything goes)."""
        properties = self.device_spec_json.get("properties")
        return list(properties) if isinstance(properties, dict) else None


class SecurityDevice(WorkbenchModel):
    id: str
    name: str
    plugin_slug: str | None = None
    device_spec: dict[str, Any] = Field(default_factory=dict)
    status: str | None = Field(default=None, description="healthy, unhealthy, health_checks_not_supported or null.")
    status_details: dict[str, Any] | None = None
    status_updated_at: datetime | None = None
    is_verifying_status: bool = False
    created_at: datetime | None = None
    organization_id: str | None = None

    @field_validator("device_spec", mode="before")
    @classmethod
    def _null_spec(cls, value: Any) -> Any:
        return value if value is not None else {}

    @property
    def tenant_id(self) -> str | None:
        value = self.device_spec.get("tenant_id")
        return str(value) if value is not None else None

    @property
    def status_message(self) -> str | None:
        """``status_details`` for people; its shape is undocumented (reference §3a), ``message`` when present."""
        if not self.status_details:
            return None
        return str(self.status_details.get("message") or self.status_details)


class VendorAlert(WorkbenchModel):
    id: str
    created_at: datetime
    vendor_sig_name: str | None = None
    vendor_severity: str | None = None
    security_device_id: str | None = None


class ExpelAlert(WorkbenchModel):
    id: str
    created_at: datetime
    expel_name: str | None = None
    expel_severity: str | None = None
    status: str | None = None


def _require_id(value: str, name: str) -> str:
    if not value or not value.strip():
        raise ValueError(f"Expected a non-empty value for {name}")
    return value


def _normal_guid(value: str) -> str:
    """A GUID in its canonical form (lower case, hyphens, no braces), or the text as given when it is not one."""
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return value.strip().lower()


def _describe(error: dict[str, Any]) -> str:
    return ": ".join(str(error[k]) for k in ("title", "detail") if error.get(k)) or str(error.get("code") or "error")


# --- client ------------------------------------------------------------------------------------------
class WorkbenchClient(ApiClient):
    """Workbench API v2 for one API key (the key decides the organization it can see).

    ``organization_id`` (the credentials block's, when it names one) is the only organization the
    client looks up or registers devices in: :meth:`require_organization` refuses any other.
    """

    service = "workbench"

    def __init__(self, *args: Any, page_limit: int = 100, organization_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.page_limit = page_limit
        self.organization_id = _normal_guid(organization_id) if organization_id else None
        self.session.headers["Accept"] = f"{MEDIA_TYPE}, {PLAIN_JSON}"
        self.write_media_type = MEDIA_TYPE
        self.nested_alert_filter: bool | None = None  # learned on first use: does the server take the two-level filter?
        self._plugins: list[Plugin] | None = None

    # --- errors -------------------------------------------------------------------------------------
    def parse_error(self, response: requests.Response) -> ErrorDetails:
        """JSON:API ``errors[]`` first; also the other shapes pyexclient met (reference §2f)."""
        try:
            body = response.json()
        except ValueError:
            body = None
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)] if isinstance(body, dict) else []
        if errors:
            return ErrorDetails(errors[0].get("code"), "; ".join(_describe(e) for e in errors), errors)
        if isinstance(body, dict) and (body.get("message") or body.get("error_description") or body.get("error")):
            text = str(body.get("message") or body.get("error_description") or body.get("error"))
            return ErrorDetails(None, f"{text} ({body['validation']})" if body.get("validation") else text)
        if response.text.lstrip().startswith("<"):
            return ErrorDetails(None, f"{response.status_code} {response.reason} (an HTML page from the edge, not an API answer)")
        return super().parse_error(response)

    def translate(self, error: ApiError) -> ApiError:
        if isinstance(error, Unauthorized):
            return Unauthorized.from_error(
                error, next_action="Check the API key in the WorkbenchCredentials block: it is wrong, revoked, or its service account was removed.")
        if isinstance(error, PermissionDenied) and error.operation in WRITE_OPERATIONS:
            return WorkbenchRoleRequired.from_error(error)
        if isinstance(error, BadRequest) and error.operation in DEVICE_WRITES:
            detail = "; ".join(str(e.get("detail") or e.get("title") or "") for e in error.errors) or error.api_message
            return DeviceRejected.from_error(error, f"Workbench refused to {DEVICE_WRITES[error.operation]}: {detail}", detail=detail)
        return error

    # --- plumbing -----------------------------------------------------------------------------------
    def _pages(self, resource: str, operation: str, params: list[tuple[str, str]], *, sort: bool = True) -> list[dict[str, Any]]:
        """Every page of a list, following ``links.next`` (on Workbench's own host only) until it is absent."""
        query = [*params, ("page[limit]", str(self.page_limit)), *(DEFAULT_SORT if sort else [])]
        response = self.request("GET", f"{API}/{resource}", operation=operation, params=query)
        pages = [response.json()]
        seen: set[str] = set()
        while (next_url := self.next_page((pages[-1].get("links") or {}).get("next"), response, operation=operation)) and next_url not in seen:
            seen.add(next_url)  # a server repeating a link must not loop us forever
            response = self.request("GET", next_url, operation=operation)
            pages.append(response.json())
        return pages

    def _list(self, resource: str, operation: str, params: list[tuple[str, str]], *, sort: bool = True) -> list[dict[str, Any]]:
        return [item for page in self._pages(resource, operation, params, sort=sort) for item in page.get("data") or []]

    def _first(self, resource: str, operation: str, params: list[tuple[str, str]]) -> dict[str, Any] | None:
        """The oldest matching resource: one page of one, sorted by creation."""
        query = [*params, ("page[limit]", "1"), *DEFAULT_SORT]
        data = self.request("GET", f"{API}/{resource}", operation=operation, params=query).json().get("data") or []
        return data[0] if data else None

    def _write(self, method: str, path: str, operation: str, body: dict[str, Any]) -> requests.Response:
        try:
            return self.request(method, path, operation=operation, json=body, headers={"Content-Type": self.write_media_type})
        except ApiError as exc:
            # A 415 is refused before processing, so resending (even a POST) cannot duplicate (reference §2g).
            if exc.status != 415 or self.write_media_type == PLAIN_JSON:
                raise
            self.write_media_type = PLAIN_JSON
            return self.request(method, path, operation=operation, json=body, headers={"Content-Type": PLAIN_JSON})

    # --- organizations and plugins -----------------------------------------------------------------
    def list_organizations(self) -> list[Organization]:
        """The organizations the key can see (a customer key sees its own only)."""
        return [Organization.from_resource(r) for r in self._list("organizations", "list_organizations", [])]

    def list_plugins(self) -> list[Plugin]:
        """The plugin catalogue, sorted by slug; cached, as it does not change during a run."""
        if self._plugins is None:
            # A custom (non-JSON:API) route: no server-side sort is relied on, we sort here.
            items = self._list("plugins", "list_plugins", [], sort=False)
            self._plugins = sorted((Plugin.from_resource(r) for r in items), key=lambda p: p.plugin_slug)
        return self._plugins

    def find_plugin(self, display_name: str) -> Plugin:
        """The one active, public plugin with this display name (vendor alone is ambiguous: Microsoft has several)."""
        plugins = self.list_plugins()
        wanted = display_name.strip().casefold()
        matches = [p for p in plugins if p.display_name.strip().casefold() == wanted and p.active and not p.internal_only]
        if len(matches) != 1:
            names = ", ".join(sorted(p.display_name for p in plugins)) or "none"
            found = "no" if not matches else f"{len(matches)}"
            raise PluginNotFound(f"Workbench lists {found} active plugin(s) named {display_name!r}; its plugins are: {names}.")
        return matches[0]

    def require_organization(self, organization_id: str) -> None:
        """Refuse an organization other than the client's own, when it has one; before any request.

        Raises:
            WorkbenchOrganizationMismatch: ``organization_id`` is not the client's organization.
        """
        if self.organization_id is not None and _normal_guid(organization_id) != self.organization_id:
            raise WorkbenchOrganizationMismatch(organization_id, self.organization_id)

    # --- security devices -----------------------------------------------------------------------------
    def find_security_devices(self, organization_id: str, plugin_slug: str) -> list[SecurityDevice]:
        """The organization's devices of one plugin, oldest first."""
        self.require_organization(_require_id(organization_id, "organization_id"))
        params = [("filter[organization][id]", organization_id),
                  ("filter[plugin_slug]", _require_id(plugin_slug, "plugin_slug")), RAW_STATUS]
        return [SecurityDevice.from_resource(r) for r in self._list("security_devices", "list_security_devices", params)]

    def get_security_device(self, device_id: str) -> SecurityDevice:
        path = f"{API}/security_devices/{_require_id(device_id, 'device_id')}"
        return SecurityDevice.from_resource(self.request("GET", path, operation="get_security_device", params=[RAW_STATUS]).json()["data"])

    def create_security_device(self, organization_id: str, name: str, plugin_slug: str, device_spec: dict[str, Any]) -> SecurityDevice:
        """Register a device. Never retried: on a timeout or 5xx, look it up before anything else.

        Raises:
            DeviceRejected: Workbench answered 400; the message holds its JSON:API detail.
            WorkbenchRoleRequired: the key may not create devices.
            WorkbenchOrganizationMismatch: the client is bound to another organization (nothing is sent).
        """
        self.require_organization(_require_id(organization_id, "organization_id"))
        body = {
            "data": {
                "type": "security_devices",
                "attributes": {"name": name, "plugin_slug": plugin_slug, "device_spec": device_spec},
                # The vendor is left to Workbench, which derives it from the plugin (reference §3d leaves it open).
                "relationships": {"organization": {"data": {"type": "organizations", "id": _require_id(organization_id, "organization_id")}}},
            }
        }
        response = self._write("POST", f"{API}/security_devices", "create_security_device", body)
        return SecurityDevice.from_resource(response.json()["data"])

    def update_security_device(self, device_id: str, attributes: dict[str, Any]) -> SecurityDevice:
        """Change the given attributes (absolute values, so a retried PATCH is harmless)."""
        body = {"data": {"type": "security_devices", "id": _require_id(device_id, "device_id"), "attributes": attributes}}
        response = self._write("PATCH", f"{API}/security_devices/{device_id}", "update_security_device", body)
        return SecurityDevice.from_resource(response.json()["data"])

    def delete_security_device(self, device_id: str) -> None:
        """Delete a device (Workbench answers 204, or 200 with a document)."""
        path = f"{API}/security_devices/{_require_id(device_id, 'device_id')}"
        self.request("DELETE", path, operation="delete_security_device", expected=(200, 204))

    # --- alerts ---------------------------------------------------------------------------------------
    def first_vendor_alert(self, device_id: str) -> VendorAlert | None:
        """The device's oldest raw alert: data is flowing once there is one."""
        params = [("filter[security_device][id]", _require_id(device_id, "device_id"))]
        first = self._first("vendor_alerts", "list_vendor_alerts", params)
        return VendorAlert.from_resource(first) if first else None

    def first_expel_alert(self, device_id: str) -> ExpelAlert | None:
        """The oldest Expel alert raised from the device's vendor alerts.

        Expel alerts have no device relationship; the two-level filter through ``vendor_alerts`` is
        tried first, and if the server refuses it, the device's vendor alerts are listed with their
        Expel alerts included (reference §4c). The answer is remembered for later calls.
        """
        _require_id(device_id, "device_id")
        if self.nested_alert_filter is not False:
            try:
                first = self._first("expel_alerts", "list_expel_alerts", [(NESTED_ALERT_FILTER, device_id)])
                self.nested_alert_filter = True
                return ExpelAlert.from_resource(first) if first else None
            except (PermissionDenied, BadRequest) as exc:
                if not _refuses_filter(exc):
                    raise
                logger.info("workbench: expel_alerts refused %s (%s); using vendor_alerts with include", NESTED_ALERT_FILTER, exc.code)
                self.nested_alert_filter = False
        params = [("filter[security_device][id]", device_id), ("include", "expel_alerts")]
        included = [r for page in self._pages("vendor_alerts", "list_vendor_alerts", params) for r in page.get("included") or []]
        alerts = {r["id"]: ExpelAlert.from_resource(r) for r in included if r.get("type") == "expel_alerts"}
        return min(alerts.values(), key=lambda a: (a.created_at, a.id), default=None)
