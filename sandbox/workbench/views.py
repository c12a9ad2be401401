"""What one API key sees at one moment: its organization's resources as :class:`Record` objects.

A view refreshes the organization's devices (their lazy health checks) once, then builds each
resource type on first use. Other organizations' objects are simply not in the view, which is how
they become 404 on a read by id and absent from lists.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from sandbox.core.scenario import OrganizationSpec
from sandbox.workbench.alerts import DeviceAlerts, device_alerts
from sandbox.workbench.catalog import VENDORS
from sandbox.workbench.devices import SecurityDevice, TenantLookup
from sandbox.workbench.errors import NotFound
from sandbox.workbench.resources import Record, Ref

LISTABLE = ("organizations", "security_devices", "vendors", "vendor_alerts", "expel_alerts")


class WorkbenchData(Protocol):
    """What a view reads of Workbench's state (``models.WorkbenchState`` holds it)."""

    @property
    def devices(self) -> dict[str, SecurityDevice]: ...

    @property
    def tenants(self) -> TenantLookup: ...

    @property
    def organizations(self) -> dict[str, OrganizationSpec]: ...

    @property
    def created_at(self) -> datetime: ...


class OrgView:
    """The resources of ``organization_id`` at ``now``, built lazily and cached for one request."""

    def __init__(self, state: WorkbenchData, organization_id: str, now: datetime) -> None:
        self.state = state
        self.organization_id = organization_id
        self.now = now
        self.devices = [d for d in state.devices.values() if d.organization_id == organization_id]
        for device in self.devices:
            device.refresh(state.tenants, now)
        self._alerts: dict[str, DeviceAlerts] = {d.id: device_alerts(d, now) for d in self.devices}
        self._by_type: dict[str, dict[str, Record]] = {}
        self._builders: dict[str, Callable[[], list[Record]]] = {
            "organizations": self._organizations,
            "security_devices": self._security_devices,
            "vendors": self._vendors,
            "vendor_alerts": lambda: [a for alerts in self._alerts.values() for a in alerts.vendor_alerts],
            "expel_alerts": lambda: [a for alerts in self._alerts.values() for a in alerts.expel_alerts],
        }

    # --- access -----------------------------------------------------------------------------------
    def records(self, resource_type: str) -> list[Record]:
        """Every visible resource of a type (an unknown type has none)."""
        if resource_type not in self._by_type:
            builder = self._builders.get(resource_type)
            built = builder() if builder else []
            self._by_type[resource_type] = {r.id.lower(): r for r in built}
        return list(self._by_type[resource_type].values())

    def resolve(self, ref: Ref) -> Record | None:
        """The record a relationship points to, if this key can see it."""
        self.records(ref.type)
        return self._by_type[ref.type].get(ref.id.lower())

    def get(self, resource_type: str, resource_id: str) -> Record:
        """One record by id.

        Raises:
            NotFound: no such visible object (another organization's objects included).
        """
        record = self.resolve(Ref(resource_type, resource_id))
        if record is None:
            raise NotFound(resource_type, resource_id)
        return record

    # --- builders ---------------------------------------------------------------------------------
    def _live_devices(self) -> list[SecurityDevice]:
        return [d for d in self.devices if d.deleted_at is None]

    def _organizations(self) -> list[Record]:
        org = self.state.organizations.get(self.organization_id)
        if org is None:
            return []
        return [
            Record(
                "organizations",
                org.id,
                {
                    "name": org.name,
                    "short_name": "".join(word[0] for word in org.name.split()).upper()[:8],
                    "organization_type": "standard",
                    "is_testing_organization": False,
                    "service_start_at": self.state.created_at,
                    "service_end_at": None,
                    "o365_tos_id": None,
                    "created_at": self.state.created_at,
                    "updated_at": self.state.created_at,
                    "deleted_at": None,
                },
                {
                    "security_devices": [Ref("security_devices", d.id) for d in self._live_devices()],
                    "vendor_alerts": [ref for alerts in self._alerts.values() for ref in alerts.vendor_refs],
                    "expel_alerts": [ref for alerts in self._alerts.values() for ref in alerts.expel_refs],
                },
            )
        ]

    def _security_devices(self) -> list[Record]:
        return [
            d.to_record(self.now, self._alerts[d.id].vendor_refs) for d in self._live_devices()
        ]

    def _vendors(self) -> list[Record]:
        records = []
        for vendor in VENDORS.values():
            record = vendor.to_record()
            mine = [d for d in self.devices if d.vendor_id == vendor.id]
            record.relationships = {
                "security_devices": [Ref("security_devices", d.id) for d in mine if d.deleted_at is None],
                "vendor_alerts": [ref for d in mine for ref in self._alerts[d.id].vendor_refs],
                "expel_alerts": [ref for d in mine for ref in self._alerts[d.id].expel_refs],
            }
            records.append(record)
        return records
