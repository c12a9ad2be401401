"""Workbench organizations, API keys, security devices and alerts. (Skeleton: being filled in.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sandbox.core.scenario import DeviceSpec, WorkbenchSpec


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


class WorkbenchState:
    def __init__(self, spec: WorkbenchSpec, api_keys: dict[str, ApiKeyInfo], tenants: TenantView, now: datetime) -> None:
        self.spec = spec
        self.api_keys = api_keys
        self.tenants = tenants

    def snapshot(self, now: datetime) -> dict[str, Any]:
        return {"security_devices": []}
