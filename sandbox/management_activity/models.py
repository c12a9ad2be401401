"""A tenant's Management Activity subscriptions and the content blobs they produce. No HTTP here.

Rules (reference §8 and the API reference):

- ``start`` fails while the unified audit log is not in effect (the DataServiceException case).
  It answers AF20024 when the subscription is already enabled with the same webhook, and 429 when
  the previous accepted start of that content type is less than 15 minutes old.
- A start within 15 minutes of a ``stop`` answers "enabled" but the subscription stays disabled
  until those 15 minutes have passed (observed: content then fails with AF20023 for a while).
- Content exists only while both the subscription and auditing are on. The first blob appears
  ``first_content_delay`` after the later of the two began, then one every ``content_interval``.
  Blobs can be listed and fetched for 7 days. Blobs are computed, not stored: the same tenant,
  content type and time always give the same blob id and records. For a tenant configured at
  start, subscriptions and auditing count as on since a week before the sandbox's (re)start.

The feed follows the tenant's audit setting through :meth:`ActivityFeed.sync_audit`, which the
service routes call with ``ExchangeOrg.audit_periods()`` whenever the setting may have changed.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sandbox.core.scenario import AuditSpec
from sandbox.exchange.models import AuditPeriod, ExchangeOrg
from sandbox.management_activity.errors import (
    AlreadyEnabled,
    AuditNotEnabled,
    ContentExpired,
    ContentNotFound,
    ExpirationInPast,
    InvalidContentId,
    InvalidContentType,
    MissingParameter,
    NoSubscription,
    StartTooSoon,
    SubscriptionDisabled,
    WebhookNotValidated,
    WindowOutOfRange,
)

CONTENT_TYPES = ("Audit.AzureActiveDirectory", "Audit.Exchange", "Audit.SharePoint", "Audit.General", "DLP.All")
RETENTION = timedelta(days=7)
DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW = timedelta(hours=24)
# Observed (elastic beats): a start time up to 7 days + 1 hour back is still accepted.
WINDOW_LOOKBACK_SLACK = timedelta(hours=1)
START_INTERVAL = timedelta(minutes=15)  # "don't re-issue start within 15 minutes"
RESTART_SETTLE = timedelta(minutes=15)  # stop → start within this: disabled until it has passed
MIN_INTERVAL = timedelta(seconds=1)

_CONTENT_ID = re.compile(r"^(\d{23})\$(\d{23})\$([a-z_]+)\$([A-Za-z_]+)$")


def canonical_content_type(value: str | None) -> str:
    """The content type as the API spells it (matched case-insensitively), or AF20001/AF20020."""
    if not value:
        raise MissingParameter("contentType")
    match = next((ct for ct in CONTENT_TYPES if ct.lower() == value.strip().lower()), None)
    if match is None:
        raise InvalidContentType()
    return match


@dataclass(frozen=True)
class Webhook:
    """A subscription's webhook as the start body gave it (never called: the sandbox has no network)."""

    address: str
    auth_id: str | None
    expiration: str | None

    @classmethod
    def from_body(cls, body: dict[str, Any], now: datetime) -> Webhook | None:
        raw = body.get("webhook")
        if raw is None:
            return None
        address = raw.get("address") if isinstance(raw, dict) else None
        if not isinstance(address, str) or not address:
            raise MissingParameter("webhook.address")
        if not address.lower().startswith("https://"):
            raise WebhookNotValidated(address, "The address must begin with HTTPS.")
        expiration = raw.get("expiration") or None
        if expiration is not None:
            try:
                when = datetime.fromisoformat(str(expiration).replace("Z", "+00:00"))
            except ValueError as exc:
                raise MissingParameter("webhook.expiration") from exc
            if (when if when.tzinfo else when.replace(tzinfo=now.tzinfo)) <= now:
                raise ExpirationInPast(str(expiration))
        return cls(address, raw.get("authId") or None, expiration)

    def to_api(self) -> dict[str, Any]:
        return {"status": "enabled", "address": self.address, "authId": self.auth_id, "expiration": self.expiration}


@dataclass
class Period:
    """A span in which a subscription was enabled; ``end`` is None while it still is."""

    start: datetime
    end: datetime | None = None

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment < self.end)


@dataclass
class Subscription:
    """One content type's subscription: the periods it was enabled, its webhook, its last start."""

    content_type: str
    periods: list[Period] = field(default_factory=list)
    last_start_at: datetime | None = None
    stopped_at: datetime | None = None
    webhook: Webhook | None = None

    def enabled(self, now: datetime) -> bool:
        return any(p.covers(now) for p in self.periods)

    def open(self) -> bool:
        """Enabled now or pending (started, waiting out the restart delay)."""
        return bool(self.periods) and self.periods[-1].end is None

    def to_api(self, now: datetime, status: str | None = None) -> dict[str, Any]:
        return {
            "contentType": self.content_type,
            "status": status or ("enabled" if self.enabled(now) else "disabled"),
            "webhook": self.webhook.to_api() if self.webhook else None,
        }


@dataclass(frozen=True)
class Blob:
    """One content blob: what ``subscriptions/content`` lists and its ``contentUri`` serves."""

    content_type: str
    created: datetime
    content_id: str
    previous: datetime | None  # the blob before it in the same run, for the occasional duplicate

    @property
    def expiration(self) -> datetime:
        return self.created + RETENTION

    def to_api(self, content_uri: str) -> dict[str, Any]:
        return {
            "contentType": self.content_type,
            "contentId": self.content_id,
            "contentUri": content_uri,
            "contentCreated": _api_time(self.created),
            "contentExpiration": _api_time(self.expiration),
        }


def _api_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _content_id(tenant_id: str, content_type: str, created: datetime) -> str:
    # Shaped like the documented ids: "<23 digits>$<same>$audit_sharepoint$Audit_SharePoint".
    serial = zlib.crc32(f"{tenant_id}/{content_type}/{created.isoformat()}".encode()) % 1_000_000
    number = created.strftime("%Y%m%d%H%M%S") + f"{created.microsecond // 1000:03d}{serial:06d}"
    underscored = content_type.replace(".", "_")
    return f"{number}${number}${underscored.lower()}${underscored}"


def resolve_window(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The listing window (callers have checked both-or-neither): default the last 24 hours."""
    if start is None or end is None:
        return now - DEFAULT_WINDOW, now
    if end < start or end - start > MAX_WINDOW or start < now - RETENTION - WINDOW_LOOKBACK_SLACK:
        raise WindowOutOfRange()
    return start, end


class ActivityFeed:
    """Subscriptions and content of one tenant."""

    def __init__(self, tenant_id: str, spec: AuditSpec, existing_subscriptions: list[str], now: datetime) -> None:
        self.tenant_id = tenant_id
        self.spec = spec
        self.first_delay = spec.first_content_delay
        self.interval = max(spec.content_interval, MIN_INTERVAL)
        # The same starting audit state the tenant's Exchange org gets (world builds both from the spec).
        initial = ExchangeOrg.create(enabled=spec.enabled, dehydrated=spec.dehydrated, activation_delay=spec.activation_delay, now=now)
        self.audit: list[AuditPeriod] = initial.audit_periods()
        self.subscriptions: dict[str, Subscription] = {}
        for name in existing_subscriptions:
            content_type = next((ct for ct in CONTENT_TYPES if ct.lower() == name.lower()), None)
            if content_type is None:
                raise ValueError(f"tenant {tenant_id}: unknown content type {name!r} in existing.subscriptions; known: {', '.join(CONTENT_TYPES)}")
            # Configured long ago: as old as the retained content, and no start throttle pending.
            since = now - RETENTION
            self.subscriptions[content_type] = Subscription(content_type, [Period(since)], last_start_at=since)

    # --- audit state --------------------------------------------------------------------------------
    def sync_audit(self, periods: list[AuditPeriod]) -> None:
        """Follow the tenant's audit setting (``ExchangeOrg.audit_periods()``)."""
        self.audit = list(periods)

    def audit_active(self, now: datetime) -> bool:
        return any(start <= now and (end is None or now < end) for start, end in self.audit)

    # --- subscriptions ------------------------------------------------------------------------------
    def start(self, content_type: str, webhook: Webhook | None, now: datetime, app_id: str, publisher: str) -> dict[str, Any]:
        """Start (or update) a subscription; return the API's answer or raise its error."""
        if not self.audit_active(now):
            raise AuditNotEnabled(self.tenant_id, content_type, app_id, publisher)
        sub = self.subscriptions.get(content_type)
        if sub is not None and sub.last_start_at is not None and now - sub.last_start_at < START_INTERVAL:
            raise StartTooSoon(math.ceil((sub.last_start_at + START_INTERVAL - now).total_seconds()))
        if sub is not None and sub.open():
            if sub.webhook == webhook:
                raise AlreadyEnabled()
            sub.webhook, sub.last_start_at = webhook, now  # start on an enabled subscription edits its webhook
            return sub.to_api(now, "enabled")
        if sub is None:
            sub = self.subscriptions[content_type] = Subscription(content_type)
        begins = now
        if sub.stopped_at is not None and now < sub.stopped_at + RESTART_SETTLE:
            begins = sub.stopped_at + RESTART_SETTLE  # answered "enabled", but disabled for a while yet
        sub.periods.append(Period(begins))
        sub.webhook, sub.last_start_at = webhook, now
        return sub.to_api(now, "enabled")

    def stop(self, content_type: str, now: datetime) -> None:
        sub = self.subscriptions.get(content_type)
        if sub is None:
            raise NoSubscription()
        if not sub.open():
            return  # stopping a stopped subscription changes nothing
        period = sub.periods[-1]
        if period.start > now:
            sub.periods.pop()  # a pending restart that never took effect
        else:
            period.end = now
        sub.stopped_at = now

    def list_subscriptions(self, now: datetime) -> list[dict[str, Any]]:
        return [self.subscriptions[ct].to_api(now) for ct in CONTENT_TYPES if ct in self.subscriptions]

    # --- content ------------------------------------------------------------------------------------
    def _readable(self, content_type: str, now: datetime) -> Subscription:
        sub = self.subscriptions.get(content_type)
        if sub is None:
            raise NoSubscription()
        if not sub.enabled(now):
            raise SubscriptionDisabled()
        return sub

    def _runs(self, sub: Subscription) -> list[tuple[datetime, datetime | None]]:
        """The spans in which both the subscription and auditing were on."""
        runs = []
        for period in sub.periods:
            for audit_start, audit_end in self.audit:
                begin = max(period.start, audit_start)
                ends = [e for e in (period.end, audit_end) if e is not None]
                end = min(ends) if ends else None
                if end is None or begin < end:
                    runs.append((begin, end))
        return runs

    def _blobs(self, sub: Subscription, low: datetime, high: datetime, now: datetime) -> list[Blob]:
        """Blobs created in ``[low, high)`` and no later than ``now``, oldest first."""
        blobs = []
        for begin, end in self._runs(sub):
            first = begin + self.first_delay
            k = max(0, math.ceil((low - first) / self.interval))
            while True:
                created = first + k * self.interval
                if created >= high or created > now or (end is not None and created >= end):
                    break
                previous = created - self.interval if k > 0 else None
                blobs.append(Blob(sub.content_type, created, _content_id(self.tenant_id, sub.content_type, created), previous))
                k += 1
        return sorted(blobs, key=lambda b: b.created)

    def content(self, content_type: str, start: datetime, end: datetime, now: datetime) -> list[Blob]:
        """Available (unexpired) blobs with ``start <= contentCreated < end``."""
        sub = self._readable(content_type, now)
        return [b for b in self._blobs(sub, max(start, now - RETENTION), end, now) if b.expiration > now]

    def blob(self, content_id: str, now: datetime) -> Blob:
        """The blob behind a contentUri, or AF20052 / AF20050 / AF20051 / AF20023."""
        match = _CONTENT_ID.match(content_id)
        content_type = next((ct for ct in CONTENT_TYPES if match and ct.replace(".", "_") == match.group(4)), None)
        if match is None or content_type is None or match.group(1) != match.group(2) or match.group(3) != match.group(4).lower():
            raise InvalidContentId(content_id)
        digits = match.group(1)
        try:
            created = datetime.strptime(digits[:14], "%Y%m%d%H%M%S").replace(tzinfo=now.tzinfo) + timedelta(milliseconds=int(digits[14:17]))
        except ValueError as exc:
            raise InvalidContentId(content_id) from exc
        sub = self.subscriptions.get(content_type)
        if sub is None:
            raise ContentNotFound(content_id)
        if not sub.enabled(now):
            raise SubscriptionDisabled()
        found = next((b for b in self._blobs(sub, created, created + timedelta(milliseconds=1), now) if b.content_id == content_id), None)
        if found is None:
            raise ContentNotFound(content_id)
        if found.expiration <= now:
            raise ContentExpired(content_id)
        return found

    # --- admin view ---------------------------------------------------------------------------------
    def snapshot(self, now: datetime) -> dict[str, Any]:
        """Subscriptions with their periods and how much content each has available now."""
        subscriptions = []
        for content_type in CONTENT_TYPES:
            sub = self.subscriptions.get(content_type)
            if sub is None:
                continue
            available = [b for b in self._blobs(sub, now - RETENTION, now + MIN_INTERVAL, now) if b.expiration > now]
            subscriptions.append(
                {
                    **sub.to_api(now),
                    "periods": [{"from": p.start, "until": p.end} for p in sub.periods],
                    "lastStartAt": sub.last_start_at,
                    "availableContent": len(available),
                    "firstContentAt": available[0].created if available else None,
                    "lastContentAt": available[-1].created if available else None,
                }
            )
        return {"auditActive": self.audit_active(now), "subscriptions": subscriptions}
