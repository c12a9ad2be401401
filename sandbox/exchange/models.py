"""A tenant's Exchange Online organization: customization state and the unified audit log setting.

``Set-AdminAuditLogConfig -UnifiedAuditLogIngestionEnabled $true`` is stored at once (a following
``Get-AdminAuditLogConfig`` reads True, as on a real tenant), but auditing *takes effect* only after
the tenant's activation delay (up to 60 minutes, reference §7): until then the Management Activity
API answers as for a tenant with auditing off, and no content is produced.

The org also keeps the periods in which auditing was in effect, so that the Management Activity
feed can tell which content was produced while it was on. A tenant that starts with auditing on
has had it on for :data:`PRE_ENABLED_HISTORY` already, so a week of content exists at start.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# Matches the Management Activity API's 7-day content retention: a configured tenant has a full week.
PRE_ENABLED_HISTORY = timedelta(days=7)

AuditPeriod = tuple[datetime, datetime | None]
"""When auditing was in effect: ``(from, until)``; ``until`` is None while it still is."""


@dataclass
class ExchangeOrg:
    """The organization-level settings the onboarding reads and changes."""

    dehydrated: bool
    ingestion_enabled: bool
    activation_delay: timedelta
    enabled_at: datetime | None = None  # when ingestion was last switched on
    customization_enabled_at: datetime | None = None
    first_opt_in_at: datetime | None = None  # Get-AdminAuditLogConfig's UnifiedAuditLogFirstOptInDate
    past_periods: list[tuple[datetime, datetime]] = field(default_factory=list)
    # Observed in the wild: after Enable-OrganizationCustomization, writes can still fail as
    # "dehydrated" for a while (~30 min) although IsDehydrated reads False. Zero (off) by default.
    hydration_delay: timedelta = timedelta()

    @classmethod
    def create(cls, *, enabled: bool, dehydrated: bool, activation_delay: timedelta, now: datetime) -> ExchangeOrg:
        # A tenant that starts with auditing on has had it on for long enough to be active (a week).
        enabled_at = now - activation_delay - PRE_ENABLED_HISTORY if enabled else None
        return cls(
            dehydrated=dehydrated,
            ingestion_enabled=enabled,
            activation_delay=activation_delay,
            enabled_at=enabled_at,
            first_opt_in_at=enabled_at,
        )

    def audit_active_since(self) -> datetime | None:
        """When auditing took (or will take) effect; None while ingestion is off."""
        if not self.ingestion_enabled or self.enabled_at is None:
            return None
        return self.enabled_at + self.activation_delay

    def audit_active(self, now: datetime) -> bool:
        since = self.audit_active_since()
        return since is not None and now >= since

    def audit_periods(self) -> list[AuditPeriod]:
        """Every period in which auditing was (or will be) in effect, oldest first."""
        periods: list[AuditPeriod] = list(self.past_periods)
        since = self.audit_active_since()
        if since is not None:
            periods.append((since, None))
        return periods

    def set_ingestion(self, enabled: bool, now: datetime) -> bool:
        """Store the setting; return False when it already had that value (nothing modified)."""
        if enabled == self.ingestion_enabled:
            return False
        if enabled:
            self.enabled_at = now
            self.first_opt_in_at = self.first_opt_in_at or now
        else:
            since = self.audit_active_since()
            if since is not None and since < now:  # a period that never took effect leaves no trace
                self.past_periods.append((since, now))
            self.enabled_at = None
        self.ingestion_enabled = enabled
        return True

    def enable_customization(self, now: datetime) -> bool:
        """Return False when the organization was already customized (the cmdlet then errors)."""
        if not self.dehydrated:
            return False
        self.dehydrated = False
        self.customization_enabled_at = now
        return True

    def writes_blocked(self, now: datetime) -> bool:
        """True while org-level writes fail as "dehydrated" (before, or just after, customization)."""
        if self.dehydrated:
            return True
        done = self.customization_enabled_at
        return done is not None and now < done + self.hydration_delay


def org_guid(tenant_id: str, what: str) -> str:
    """A stable GUID for one of the tenant's Exchange objects (same tenant, same id, every run)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"exchange/{tenant_id.lower()}/{what}"))
