"""A tenant's Management Activity subscriptions and content blobs. (Skeleton: being filled in.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sandbox.core.scenario import AuditSpec


class ActivityFeed:
    def __init__(self, tenant_id: str, spec: AuditSpec, existing_subscriptions: list[str], now: datetime) -> None:
        self.tenant_id = tenant_id
        self.spec = spec
        self.subscriptions: dict[str, Any] = {}

    def snapshot(self, now: datetime) -> dict[str, Any]:
        return {"subscriptions": []}
