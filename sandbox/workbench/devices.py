"""A security device and its health lifecycle, computed lazily from scenario time.

Workbench checks a device's health ``health_check_delay`` after it is created (until then
``status`` is null and ``is_verifying_status`` true), then every ``health_check_interval``. Status
changes only at a check, and ``status_updated_at`` is the time of the check that saw the change.
There is no background thread: a read replays the checks due since the last read, each against the
tenant as it was at that check (grants carry their replication time), so the result does not depend
on how often clients poll.

An M365 device's health follows its tenant (``DeviceSpec.health``): unhealthy while admin consent is
missing or permissions are withheld, healthy once both are in place; a tenant id unknown to the
scenario is unhealthy ("tenant not found"). Data starts ``first_data_delay`` after the later of
"healthy" and "audit active", and once it has started it stays started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sandbox.core.scenario import DeviceSpec
from sandbox.workbench.resources import Record, Ref

MAX_CATCH_UP_CHECKS = 2000  # older missed checks are skipped: a status is what the recent checks saw
MIN_CHECK_INTERVAL = timedelta(seconds=1)


class TenantStatusLike(Protocol):
    """What a health check reads of a tenant (``models.TenantStatus``)."""

    @property
    def tenant_id(self) -> str: ...

    @property
    def display_name(self) -> str: ...

    @property
    def consent_granted(self) -> bool: ...

    @property
    def missing_permissions(self) -> list[str]: ...

    @property
    def audit_active_since(self) -> datetime | None: ...

    @property
    def device(self) -> DeviceSpec: ...


class TenantLookup(Protocol):
    def tenant_status(self, tenant_id: str, now: datetime) -> TenantStatusLike | None: ...


def evaluate_health(
    tenant_id: str | None, status: TenantStatusLike | None, emulated: bool, plugin_name: str
) -> tuple[str, dict[str, Any] | None]:
    """One health check's verdict: ``(status, status_details)``."""
    if not emulated:
        return "unhealthy", {"message": f"Expel could not connect to {plugin_name}: the sandbox emulates only Microsoft 365 devices."}
    if status is None:
        return "unhealthy", {
            "message": f"Microsoft 365 tenant {tenant_id} was not found. Check the Directory (tenant) ID in the device settings."
        }
    where = f"tenant {status.display_name} ({status.tenant_id})"
    if status.device.health == "stays_unhealthy":
        return "unhealthy", {"message": status.device.unhealthy_reason}
    if not status.consent_granted:
        return "unhealthy", {
            "message": f"Admin consent has not been granted for the Expel application in {where}. "
            "A Global Administrator of the tenant must grant admin consent."
        }
    if status.missing_permissions:
        return "unhealthy", {
            "message": f"The Expel application is missing permissions in {where}: "
            f"{', '.join(status.missing_permissions)}. Grant admin consent again to add them."
        }
    return "healthy", None


@dataclass
class SecurityDevice:
    """One registered security device and the health/data timeline Workbench has observed for it."""

    id: str
    organization_id: str
    vendor_id: str
    plugin_slug: str
    plugin_name: str
    emulated: bool  # health follows a scenario tenant (the M365 plugin)
    name: str
    location: str | None
    device_spec: dict[str, Any]
    device_type: str | None
    task_source: str | None
    no_alert_threshold_hours: float | None
    properties: dict[str, Any]
    created_at: datetime
    created_by: str
    behaviour: DeviceSpec
    checks_from: datetime
    updated_at: datetime = field(init=False)
    deleted_at: datetime | None = None
    status: str | None = None
    status_details: dict[str, Any] | None = None
    status_updated_at: datetime | None = None
    last_check_at: datetime | None = None
    healthy_since: datetime | None = None
    first_data_at: datetime | None = None

    def __post_init__(self) -> None:
        self.updated_at = self.created_at

    @property
    def tenant_id(self) -> str | None:
        value = self.device_spec.get("tenant_id") if self.emulated else None
        return str(value) if value is not None else None

    def is_verifying(self, now: datetime) -> bool:
        return now < self.checks_from

    def restart_checks(self, behaviour: DeviceSpec, now: datetime, new_tenant: bool) -> None:
        """After a ``device_spec`` change: verify again; a different tenant starts a new data timeline."""
        self.behaviour = behaviour
        self.checks_from = now + behaviour.health_check_delay
        self.last_check_at = None
        if new_tenant:
            self.healthy_since = None
            self.first_data_at = None

    # --- lazy evaluation --------------------------------------------------------------------------
    def refresh(self, tenants: TenantLookup, now: datetime) -> None:
        """Replay the health checks due by ``now``, then settle when data starts if it can be known."""
        end = min(now, self.deleted_at) if self.deleted_at else now
        for check_at in self._due_checks(end):
            status = tenants.tenant_status(self.tenant_id, check_at) if self.tenant_id else None
            verdict, details = evaluate_health(self.tenant_id, status, self.emulated, self.plugin_name)
            if verdict != self.status:
                self.status_updated_at = check_at
                self.healthy_since = check_at if verdict == "healthy" else None
            self.status, self.status_details = verdict, details
            self.last_check_at = check_at
        self._settle_data_start(tenants, end)

    def _due_checks(self, end: datetime) -> list[datetime]:
        if end < self.checks_from:
            return []
        interval = max(self.behaviour.health_check_interval, MIN_CHECK_INTERVAL)
        last_index = int((end - self.checks_from) / interval)
        first_index = 0 if self.last_check_at is None else int((self.last_check_at - self.checks_from) / interval) + 1
        first_index = max(first_index, last_index - MAX_CATCH_UP_CHECKS + 1)
        return [self.checks_from + i * interval for i in range(first_index, last_index + 1)]

    def _settle_data_start(self, tenants: TenantLookup, now: datetime) -> None:
        if self.first_data_at is not None or self.healthy_since is None or self.tenant_id is None:
            return
        status = tenants.tenant_status(self.tenant_id, now)
        if status is None or status.audit_active_since is None:
            return
        start = max(self.healthy_since, status.audit_active_since) + self.behaviour.first_data_delay
        if start <= now:  # once data has flowed it has flowed; later tenant changes do not undo it
            self.first_data_at = start

    # --- representation ---------------------------------------------------------------------------
    def to_record(self, now: datetime, vendor_alerts: list[Ref]) -> Record:
        return Record(
            "security_devices",
            self.id,
            {
                "name": self.name,
                "location": self.location,
                "plugin_slug": self.plugin_slug,
                "device_spec": dict(self.device_spec),
                "device_type": self.device_type,
                "task_source": self.task_source,
                "status": self.status,
                "status_details": dict(self.status_details) if self.status_details else None,
                "status_updated_at": self.status_updated_at,
                "is_verifying_status": self.is_verifying(now),
                "no_alert_threshold_hours": self.no_alert_threshold_hours,
                "has_console_credentials": False,
                "has_two_factor_secret": False,
                "properties": dict(self.properties),
                "created_at": self.created_at,
                "updated_at": self.updated_at,
                "deleted_at": self.deleted_at,
            },
            {
                "organization": Ref("organizations", self.organization_id),
                "vendor": Ref("vendors", self.vendor_id),
                "assembler": None,
                "parent_security_device": None,
                "child_security_devices": [],
                "vendor_alerts": vendor_alerts,
            },
        )
