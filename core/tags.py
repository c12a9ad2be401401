"""Tags the project puts on flow runs, so that the runs, the automations and ``status`` agree."""

from __future__ import annotations

TENANT_TAG_PREFIX = "tenant:"  # each onboarding run carries tenant:<tenant id>
WAIT_CHECK_TAG = "onboarding-resumer"  # a resumer run a waiting run scheduled (its next check), so a crashed one is restarted


def tenant_tag(tenant_id: str) -> str:
    return f"{TENANT_TAG_PREFIX}{tenant_id}"
