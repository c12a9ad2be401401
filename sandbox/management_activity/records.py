"""Audit records inside a content blob: realistic fields, deterministic values.

Every value derives from the tenant, the content type and the blob's creation time, so the same
blob always holds the same records (ids included), however often it is fetched. Records are
not in time order, and now and then a blob repeats a record of the blob before it, as the real
feed does (reference §8: dedupe on ``Id``).
"""

from __future__ import annotations

import uuid
import zlib
from datetime import datetime, timedelta
from typing import Any

# Per content type: (RecordType, Operation, Workload, ResultStatus, UserType) of typical events.
_TEMPLATES: dict[str, tuple[tuple[int, str, str, str, int], ...]] = {
    "Audit.AzureActiveDirectory": (
        (15, "UserLoggedIn", "AzureActiveDirectory", "Success", 0),
        (8, "Add user.", "AzureActiveDirectory", "Success", 0),
        (15, "UserLoginFailed", "AzureActiveDirectory", "Failed", 0),
    ),
    "Audit.Exchange": (
        (1, "Set-Mailbox", "Exchange", "True", 2),
        (50, "MailItemsAccessed", "Exchange", "Succeeded", 0),
        (2, "Send", "Exchange", "Succeeded", 0),
    ),
    "Audit.SharePoint": (
        (6, "FileAccessed", "SharePoint", "Succeeded", 0),
        (4, "PageViewed", "SharePoint", "Succeeded", 0),
        (6, "FileModified", "OneDrive", "Succeeded", 0),
    ),
    "Audit.General": (
        (25, "MemberAdded", "MicrosoftTeams", "Succeeded", 0),
        (20, "ViewReport", "PowerBI", "Succeeded", 0),
        (25, "TeamsSessionStarted", "MicrosoftTeams", "Succeeded", 0),
    ),
    "DLP.All": (
        (11, "DLPRuleMatch", "SharePoint", "Succeeded", 0),
        (13, "DLPRuleMatch", "Exchange", "Succeeded", 0),
    ),
}
_USERS = ("admin", "alex.wilber", "megan.bowen", "lee.gu", "adele.vance")
_NAMESPACE = uuid.UUID("6f1c2d3e-4b5a-4c6d-8e7f-901a2b3c4d5e")


def _seed(*parts: object) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def _record(tenant_id: str, domain: str, content_type: str, created: datetime, index: int) -> dict[str, Any]:
    seed = _seed(tenant_id, content_type, created.isoformat(), index)
    record_type, operation, workload, status, user_type = _TEMPLATES[content_type][seed % len(_TEMPLATES[content_type])]
    user = f"{_USERS[(seed >> 4) % len(_USERS)]}@{domain}"
    # Events happened before the blob that carries them, in no particular order.
    happened = created - timedelta(seconds=60 + (seed >> 8) % 3000)
    record: dict[str, Any] = {
        "CreationTime": happened.strftime("%Y-%m-%dT%H:%M:%S"),
        "Id": str(uuid.uuid5(_NAMESPACE, f"{tenant_id}/{content_type}/{created.isoformat()}/{index}")),
        "Operation": operation,
        "OrganizationId": tenant_id,
        "RecordType": record_type,
        "ResultStatus": status,
        "UserKey": f"1003{seed:012X}@{domain}" if workload == "AzureActiveDirectory" else f"1003{seed:012X}",
        "UserType": user_type,
        "Version": 1,
        "Workload": workload,
        "ClientIP": f"203.0.113.{seed % 250 + 1}",
        "ObjectId": f"https://{domain.split('.')[0]}.sharepoint.com/sites/Finance/Shared Documents/Q{seed % 4 + 1}.xlsx"
        if workload in ("SharePoint", "OneDrive")
        else user,
        "UserId": user,
    }
    if workload == "AzureActiveDirectory":
        record["AzureActiveDirectoryEventType"] = 1
    return record


def blob_records(tenant_id: str, domain: str, content_type: str, created: datetime, previous: datetime | None) -> list[dict[str, Any]]:
    """The records of the blob created at ``created``; ``previous`` is the blob before it, if any."""
    count = 2 + _seed(tenant_id, content_type, created.isoformat()) % 3
    records = [_record(tenant_id, domain, content_type, created, i) for i in range(count)]
    if previous is not None and _seed(tenant_id, content_type, created.isoformat(), "dup") % 4 == 0:
        records.append(_record(tenant_id, domain, content_type, previous, 0))  # a duplicate, as the real feed sends
    return records
