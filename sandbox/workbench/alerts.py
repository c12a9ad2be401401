"""Vendor alerts and Expel alerts of a device, generated from its data timeline.

Once a device's data has started (``SecurityDevice.first_data_at``), a vendor alert arrives every
``VENDOR_ALERT_INTERVAL``; ``first_alert_delay`` after the first one Expel raises its first alert,
then one every ``EXPEL_ALERT_INTERVAL`` (none for a quiet tenant). Both series are capped so that a
long scenario stays cheap. Ids are uuid5 of the device id and the alert's index, so repeated reads
return the same objects; a deleted device stops producing alerts but keeps the ones it has.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sandbox.workbench.devices import SecurityDevice
from sandbox.workbench.resources import Record, Ref

VENDOR_ALERT_INTERVAL = timedelta(hours=1)
MAX_VENDOR_ALERTS = 200
EXPEL_ALERT_INTERVAL = timedelta(hours=24)
MAX_EXPEL_ALERTS = 10
AUDIT_LATENCY = timedelta(minutes=75)  # M365 audit events land 60-90 minutes late (reference §7)
_NAMESPACE = uuid.UUID("3b0d6f0e-8f0a-4c1e-9a57-5e7b2f1c9d24")

# (vendor signature, vendor severity, Expel severity)
_SIGNATURES = (
    ("Suspicious inbox manipulation rule", "MEDIUM", "MEDIUM"),
    ("Impossible travel activity", "LOW", "LOW"),
    ("Mass download by a single user", "LOW", "LOW"),
    ("Suspicious email forwarding activity", "HIGH", "HIGH"),
    ("Unusual volume of file deletion", "MEDIUM", "LOW"),
)


@dataclass
class DeviceAlerts:
    """The alerts one device has produced by a moment."""

    vendor_alerts: list[Record]
    expel_alerts: list[Record]
    # Linkage to them, made once with the alerts: every device and organization record lists it.
    vendor_refs: list[Ref] = field(init=False)
    expel_refs: list[Ref] = field(init=False)

    def __post_init__(self) -> None:
        self.vendor_refs = [a.ref for a in self.vendor_alerts]
        self.expel_refs = [a.ref for a in self.expel_alerts]


def _alert_id(device: SecurityDevice, kind: str, index: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{device.id}:{kind}:{index}"))


def _count(start: datetime, interval: timedelta, end: datetime, cap: int) -> int:
    if end < start:
        return 0
    return min(int((end - start) / interval) + 1, cap)


# Every Workbench read builds its organization's view, so the same alerts would be built again on each
# request (200 devices x 200 alerts each at scale); they depend only on the key below, so each
# device keeps its latest build (one per device: older counts are not asked for again).
_BUILT: dict[str, tuple[tuple[object, ...], DeviceAlerts]] = {}


def device_alerts(device: SecurityDevice, now: datetime) -> DeviceAlerts:
    """Every alert of ``device`` created by ``now`` (or by its deletion)."""
    start = device.first_data_at
    if start is None:
        return DeviceAlerts([], [])
    end = min(now, device.deleted_at) if device.deleted_at else now
    vendor_count = _count(start, VENDOR_ALERT_INTERVAL, end, MAX_VENDOR_ALERTS)
    delay = device.behaviour.first_alert_delay
    expel_count = 0 if delay is None else _count(start + delay, EXPEL_ALERT_INTERVAL, end, MAX_EXPEL_ALERTS)
    key = (device.id, device.tenant_id, device.device_spec.get("tenant_name"), device.organization_id, device.vendor_id,
           start, delay, vendor_count, expel_count)
    cached = _BUILT.get(device.id)
    if cached is not None and cached[0] == key:
        return cached[1]
    built = _build(device, start, delay, vendor_count, expel_count)
    _BUILT[device.id] = (key, built)
    return built


def _build(device: SecurityDevice, start: datetime, delay: timedelta | None, vendor_count: int, expel_count: int) -> DeviceAlerts:
    expel_times = [] if delay is None else [start + delay + i * EXPEL_ALERT_INTERVAL for i in range(expel_count)]
    # Each Expel alert is raised from the latest vendor alert at or before it.
    source_of = [min(int((t - start) / VENDOR_ALERT_INTERVAL), vendor_count - 1) for t in expel_times]
    expel_refs_of: dict[int, list[Ref]] = {}
    for index, source in enumerate(source_of):
        expel_refs_of.setdefault(source, []).append(Ref("expel_alerts", _alert_id(device, "expel_alert", index)))
    vendor = [
        _vendor_alert(device, i, start + i * VENDOR_ALERT_INTERVAL, expel_refs_of.get(i, [])) for i in range(vendor_count)
    ]
    expel = [_expel_alert(device, i, t, vendor[source_of[i]]) for i, t in enumerate(expel_times)]
    return DeviceAlerts(vendor, expel)


def _vendor_alert(device: SecurityDevice, index: int, at: datetime, expel_alerts: list[Ref]) -> Record:
    signature, vendor_severity, _ = _SIGNATURES[index % len(_SIGNATURES)]
    tenant = device.device_spec.get("tenant_name") or device.tenant_id
    return Record(
        "vendor_alerts",
        _alert_id(device, "vendor_alert", index),
        {
            "created_at": at,
            "updated_at": at,
            "first_seen": at - AUDIT_LATENCY,
            "status": "NORMAL",
            "vendor_severity": vendor_severity,
            "vendor_sig_name": signature,
            "vendor_message": f"{signature} detected in Microsoft 365 tenant {tenant}.",
            "signature_id": f"m365-{index % len(_SIGNATURES) + 1:04d}",
            "description": f"Microsoft 365 alert policy '{signature}' matched.",
            "original_alert_id": str(uuid.uuid5(_NAMESPACE, f"{device.id}:original:{index}")),
            "original_source_id": device.tenant_id,
            "evidence_summary": [],
            "evidence_activity_start_at": at - AUDIT_LATENCY,
            "evidence_activity_end_at": at - AUDIT_LATENCY + timedelta(minutes=5),
        },
        {
            "security_device": Ref("security_devices", device.id),
            "organization": Ref("organizations", device.organization_id),
            "vendor": Ref("vendors", device.vendor_id),
            "expel_alerts": expel_alerts,
        },
    )


def _expel_alert(device: SecurityDevice, index: int, at: datetime, source: Record) -> Record:
    signature = source.attributes["vendor_sig_name"]
    severity = next(s[2] for s in _SIGNATURES if s[0] == signature)
    return Record(
        "expel_alerts",
        _alert_id(device, "expel_alert", index),
        {
            "created_at": at,
            "updated_at": at,
            "expel_alert_time": at,
            "status": "OPEN",
            "status_updated_at": at,
            "expel_severity": severity,
            "alert_type": "CLOUD",
            "expel_name": f"Microsoft 365: {signature}",
            "expel_message": f"{signature} in tenant {device.device_spec.get('tenant_name') or device.tenant_id}.",
            "expel_alias_name": None,
            "expel_signature_id": f"m365_{signature.lower().replace(' ', '_')}",
            "expel_version": "1",
            "close_reason": None,
            "close_comment": None,
            "vendor_alert_count": 1,
            "activity_first_at": source.attributes["evidence_activity_start_at"],
            "activity_last_at": source.attributes["evidence_activity_end_at"],
        },
        {
            "organization": Ref("organizations", device.organization_id),
            "vendor": Ref("vendors", device.vendor_id),
            "vendor_alerts": [source.ref],
        },
    )
