"""Workbench state and rules: API keys, organizations, security devices. No HTTP here.

Rules the sandbox chooses where the reference is silent (they are listed in the project notes too):

- A key acts only in its own organization. Reads of other organizations' objects are 404 (they are
  invisible); a write naming another organization is 403.
- Read-only keys and ``organization_analyst`` keys cannot create, update or delete security devices
  (403); adding an integration is an Organization Admin action (reference §1a).
- Devices are not unique: a second device for the same tenant and plugin in the same organization is
  accepted, as Workbench has no such constraint we know of. Onboarding code must look up before POST.
- A ``device_spec.tenant_id`` that is no tenant of the scenario is accepted (Workbench cannot know);
  the device's first health check reports the tenant as not found.
- Delete is soft: ``deleted_at`` is set and the device disappears from reads; its alerts remain.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sandbox.core.scenario import DeviceSpec, OrganizationSpec, WorkbenchSpec
from sandbox.workbench.alerts import device_alerts
from sandbox.workbench.catalog import VENDORS, Plugin, build_plugins, validate_device_spec
from sandbox.workbench.devices import SecurityDevice
from sandbox.workbench.errors import Forbidden, InvalidResource, NotFound, Unauthorized
from sandbox.workbench.schemas import DEVICE_TYPES, SECURITY_DEVICES, TASK_SOURCES
from sandbox.workbench.views import OrgView

WRITABLE = ("name", "location", "plugin_slug", "device_spec", "device_type", "task_source", "no_alert_threshold_hours", "properties")
IMMUTABLE_AFTER_CREATE = ("plugin_slug",)
WRITER_ROLES = ("organization_admin",)
_OPTIONAL_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "location": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "device_type": (lambda v: v in DEVICE_TYPES, f"one of {list(DEVICE_TYPES)}"),
    "task_source": (lambda v: v in TASK_SOURCES, f"one of {list(TASK_SOURCES)}"),
    "no_alert_threshold_hours": (
        lambda v: v is None or (isinstance(v, int | float) and not isinstance(v, bool)),
        "a number or null",
    ),
    "properties": (lambda v: v is None or isinstance(v, dict), "an object or null"),
}


@dataclass(frozen=True)
class ApiKeyInfo:
    """What a presented API key grants."""

    name: str
    organization_id: str
    role: str
    read_only: bool


@dataclass(frozen=True)
class TenantStatus:
    """What Workbench's M365 integration can see of a customer tenant at a moment."""

    tenant_id: str
    display_name: str
    workbench_organization: str | None
    consent_granted: bool
    missing_permissions: list[str]
    audit_active_since: datetime | None
    device: DeviceSpec


class TenantView(Protocol):
    def tenant_status(self, tenant_id: str, now: datetime) -> TenantStatus | None: ...


def _guid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def _linkage_id(relationships: dict[str, Any], name: str) -> str | None:
    """``relationships.<name>.data.id``; a malformed linkage is a 400 naming the relationship."""
    if name not in relationships:
        return None
    entry = relationships[name]
    data = entry.get("data") if isinstance(entry, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise InvalidResource(f"relationships.{name}.data must be a resource identifier {{type, id}}")
    return data["id"]


class WorkbenchState:
    """Everything Workbench holds for the scenario's organizations."""

    def __init__(self, spec: WorkbenchSpec, api_keys: dict[str, ApiKeyInfo], tenants: TenantView, now: datetime) -> None:
        self.spec = spec
        self.api_keys = api_keys
        self.tenants = tenants
        self.created_at = now
        self.organizations: dict[str, OrganizationSpec] = {o.id.lower(): o for o in spec.organizations}
        self.plugins: dict[str, Plugin] = build_plugins(spec.m365_plugin_slug)
        self.devices: dict[str, SecurityDevice] = {}

    # --- access -----------------------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> ApiKeyInfo:
        """The key behind an ``Authorization: Bearer <key>`` header.

        Raises:
            Unauthorized: no header, another scheme, or a key Workbench does not know.
        """
        if not authorization:
            raise Unauthorized("Missing Authorization header; send 'Authorization: Bearer <api key>'.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("The Authorization header must use the Bearer scheme.")
        key = self.api_keys.get(token.strip())
        if key is None:
            raise Unauthorized("The API key is invalid or has been revoked.")
        return key

    def view(self, key: ApiKeyInfo, now: datetime) -> OrgView:
        """What ``key`` can read at ``now``."""
        return OrgView(self, key.organization_id.lower(), now)

    def _require_writer(self, key: ApiKeyInfo, action: str) -> None:
        if key.read_only:
            raise Forbidden(f"The API key '{key.name}' is read-only; it cannot {action} security_devices.")
        if key.role not in WRITER_ROLES:
            raise Forbidden(f"The role {key.role} cannot {action} security_devices; an organization_admin key is required.")

    def _require_own_org(self, key: ApiKeyInfo, organization_id: str, action: str) -> str:
        org = _guid(organization_id)
        if org is None or org != key.organization_id.lower():
            raise Forbidden(f"You do not have permission to {action} security_devices in organization {organization_id}.")
        return org

    def _live_device(self, key: ApiKeyInfo, device_id: str) -> SecurityDevice:
        device = self.devices.get(device_id.lower())
        if device is None or device.deleted_at is not None or device.organization_id != key.organization_id.lower():
            raise NotFound("security_devices", device_id)
        return device

    # --- security devices -------------------------------------------------------------------------
    def create_device(
        self, key: ApiKeyInfo, attributes: dict[str, Any], relationships: dict[str, Any], now: datetime
    ) -> SecurityDevice:
        """``POST /security_devices``: validate like Workbench, then register the device.

        Raises:
            Forbidden: read-only key, or an organization other than the key's.
            InvalidResource: a missing or invalid attribute, named in the detail.
        """
        self._require_writer(key, "create")
        self._check_attribute_names(attributes)
        org_ref = _linkage_id(relationships, "organization")
        if org_ref is None:
            raise InvalidResource("relationships.organization is required")
        organization_id = self._require_own_org(key, org_ref, "create")
        name = attributes.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidResource("name is required and must be a non-empty string")
        slug = attributes.get("plugin_slug")
        if not isinstance(slug, str) or not slug:
            raise InvalidResource("plugin_slug is required")
        plugin = self.plugins.get(slug)
        if plugin is None:
            raise InvalidResource(f"plugin_slug '{slug}' is not a known plugin")
        device_spec = validate_device_spec(attributes.get("device_spec"), plugin)
        optional = self._optional_attributes(attributes)
        vendor_id = self._vendor_id(relationships, plugin)
        emulated = plugin.slug == self.spec.m365_plugin_slug
        behaviour = self._behaviour(device_spec, emulated, now)
        device = SecurityDevice(
            id=str(uuid.uuid4()),
            organization_id=organization_id,
            vendor_id=vendor_id,
            plugin_slug=plugin.slug,
            plugin_name=plugin.display_name,
            emulated=emulated,
            name=name,
            device_spec=device_spec,
            created_at=now,
            created_by=key.name,
            behaviour=behaviour,
            checks_from=now + behaviour.health_check_delay,
            location=optional.get("location"),
            device_type=optional.get("device_type", plugin.vendor_type),
            task_source=optional.get("task_source", "EXPEL_TASKPOOL"),
            no_alert_threshold_hours=optional.get("no_alert_threshold_hours"),
            properties=optional.get("properties") or {},
        )
        self.devices[device.id] = device
        return device

    def update_device(
        self, key: ApiKeyInfo, device_id: str, attributes: dict[str, Any], relationships: dict[str, Any], now: datetime
    ) -> SecurityDevice:
        """``PATCH /security_devices/{id}``: change the given attributes; a new ``device_spec`` is verified again."""
        self._require_writer(key, "update")
        device = self._live_device(key, device_id)
        self._check_attribute_names(attributes)
        org_ref = _linkage_id(relationships, "organization")
        if org_ref is not None:
            self._require_own_org(key, org_ref, "update")
        for name in IMMUTABLE_AFTER_CREATE:
            if name in attributes and attributes[name] != getattr(device, name):
                raise InvalidResource(f"{name} cannot be changed once the device exists")
        if "name" in attributes:
            if not isinstance(attributes["name"], str) or not attributes["name"].strip():
                raise InvalidResource("name must be a non-empty string")
            device.name = attributes["name"]
        if "vendor" in relationships:
            device.vendor_id = self._vendor_id(relationships, self.plugins[device.plugin_slug])
        if "device_spec" in attributes:
            spec = validate_device_spec(attributes["device_spec"], self.plugins[device.plugin_slug])
            if spec != device.device_spec:
                new_tenant = str(spec.get("tenant_id", "")).lower() != str(device.tenant_id or "").lower()
                device.device_spec = spec
                device.restart_checks(self._behaviour(spec, device.emulated, now), now, new_tenant)
        for name, value in self._optional_attributes(attributes).items():
            setattr(device, name, value if name != "properties" else (value or {}))
        device.updated_at = now
        return device

    def delete_device(self, key: ApiKeyInfo, device_id: str, now: datetime) -> None:
        """``DELETE /security_devices/{id}``: soft delete."""
        self._require_writer(key, "delete")
        device = self._live_device(key, device_id)
        device.refresh(self.tenants, now)  # settle its timeline up to the deletion
        device.deleted_at = now
        device.updated_at = now

    def _check_attribute_names(self, attributes: dict[str, Any]) -> None:
        for name in attributes:
            if name not in SECURITY_DEVICES.attributes:
                raise InvalidResource(f"security_devices do not have attribute '{name}'")
            if name not in WRITABLE:
                raise InvalidResource(f"{name} is read-only")

    @staticmethod
    def _optional_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
        """The optional writable attributes present in the body, each validated."""
        values: dict[str, Any] = {}
        for name, (is_valid, wording) in _OPTIONAL_CHECKS.items():
            if name in attributes:
                if not is_valid(attributes[name]):
                    raise InvalidResource(f"{name} must be {wording}")
                values[name] = attributes[name]
        return values

    @staticmethod
    def _vendor_id(relationships: dict[str, Any], plugin: Plugin) -> str:
        vendor_ref = _linkage_id(relationships, "vendor")
        if vendor_ref is None:
            return plugin.vendor.id  # derived from the plugin when not given
        vendor = VENDORS.get(str(vendor_ref).lower())
        if vendor is None:
            raise InvalidResource(f"relationships.vendor: there is no vendors with id {vendor_ref}")
        return vendor.id

    def _behaviour(self, device_spec: dict[str, Any], emulated: bool, now: datetime) -> DeviceSpec:
        """How the scenario says this tenant's device behaves (defaults for unknown tenants)."""
        status = self.tenants.tenant_status(str(device_spec.get("tenant_id")), now) if emulated else None
        return status.device if status is not None else DeviceSpec()

    # --- inspection ---------------------------------------------------------------------------------
    def snapshot(self, now: datetime) -> dict[str, Any]:
        """Every device (deleted ones included) with its health and alert timeline, for ``/_sandbox/workbench``."""
        devices = []
        for device in self.devices.values():
            device.refresh(self.tenants, now)
            alerts = device_alerts(device, now)
            devices.append(
                {
                    "id": device.id,
                    "organization_id": device.organization_id,
                    "name": device.name,
                    "plugin_slug": device.plugin_slug,
                    "tenant_id": device.tenant_id,
                    "created_by": device.created_by,
                    "created_at": device.created_at,
                    "deleted_at": device.deleted_at,
                    "status": device.status,
                    "status_details": device.status_details,
                    "status_updated_at": device.status_updated_at,
                    "is_verifying_status": device.is_verifying(now),
                    "first_check_at": device.checks_from,
                    "healthy_since": device.healthy_since,
                    "first_data_at": device.first_data_at,
                    "vendor_alerts": [{"id": a.id, "created_at": a.attributes["created_at"]} for a in alerts.vendor_alerts],
                    "expel_alerts": [{"id": a.id, "created_at": a.attributes["created_at"]} for a in alerts.expel_alerts],
                }
            )
        return {
            "organizations": [{"id": o.id, "name": o.name} for o in self.organizations.values()],
            "api_keys": [
                {"name": k.name, "organization_id": k.organization_id, "role": k.role, "read_only": k.read_only}
                for k in self.api_keys.values()
            ],
            "plugins": sorted(self.plugins),
            "security_devices": devices,
        }
