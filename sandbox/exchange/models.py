"""A tenant's Exchange Online organization: customization state and the unified audit log setting.

``Set-AdminAuditLogConfig -UnifiedAuditLogIngestionEnabled $true`` is stored at once (a following
``Get-AdminAuditLogConfig`` reads True, as on a real tenant), but auditing *takes effect* only after
the tenant's activation delay (up to 60 minutes, reference §7): until then the Management Activity
API answers as for a tenant with auditing off, and no content is produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass
class ExchangeOrg:
    """The organization-level settings the onboarding reads and changes."""

    dehydrated: bool
    ingestion_enabled: bool
    activation_delay: timedelta
    enabled_at: datetime | None = None  # when ingestion was last switched on
    customization_enabled_at: datetime | None = None

    @classmethod
    def create(cls, *, enabled: bool, dehydrated: bool, activation_delay: timedelta, now: datetime) -> ExchangeOrg:
        # A tenant that starts with auditing on has had it on for long enough to be active.
        return cls(
            dehydrated=dehydrated,
            ingestion_enabled=enabled,
            activation_delay=activation_delay,
            enabled_at=now - activation_delay if enabled else None,
        )

    def audit_active_since(self) -> datetime | None:
        """When auditing took (or will take) effect; None while ingestion is off."""
        if not self.ingestion_enabled or self.enabled_at is None:
            return None
        return self.enabled_at + self.activation_delay

    def audit_active(self, now: datetime) -> bool:
        since = self.audit_active_since()
        return since is not None and now >= since

    def set_ingestion(self, enabled: bool, now: datetime) -> None:
        if enabled and not self.ingestion_enabled:
            self.enabled_at = now
        if not enabled:
            self.enabled_at = None
        self.ingestion_enabled = enabled

    def enable_customization(self, now: datetime) -> bool:
        """Return False when the organization was already customized (the cmdlet then errors)."""
        if not self.dehydrated:
            return False
        self.dehydrated = False
        self.customization_enabled_at = now
        return True
