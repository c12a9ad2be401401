"""One process calling Graph for one tenant as fast as it can, as a tenant's run does in a burst.

    python -m tests.budget_caller TENANT SECONDS PROVIDER_APP_BLOCK WORKBENCH_BLOCK [--on-cue]

The context is built the production way (``tasks.runtime.build_context``: the credential blocks by
name, the settings and the call budget from the environment). Prints one JSON line: calls answered,
calls that ended throttled (after the client's own retries), and when the first call was asked for.
With ``--on-cue`` it prints ``ready`` once its context is built and calls from the Unix time it is
then given on stdin, so that processes call in a known order whatever their start-up took.
"""

from __future__ import annotations

import json
import sys
import time

from clients.errors import CallBudgetExhausted, Throttled
from core.requests import BlockNames, TenantRequest
from tasks.runtime import build_context
from tests.deployed import ORG


def main(argv: list[str]) -> int:
    tenant, seconds, provider_app, workbench = argv[0], float(argv[1]), argv[2], argv[3]
    context = build_context(TenantRequest(tenant_id=tenant, organization_name="Budget", provider_org_id=ORG),
                            BlockNames(provider_app=provider_app, workbench=workbench))
    if "--on-cue" in argv[4:]:
        print("ready", flush=True)
        time.sleep(max(0.0, float(sys.stdin.readline()) - time.time()))
    answered = throttled = 0
    started_at = time.time()  # when the first call was asked for: a held budget makes it wait
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            context.graph.get_organization()
            answered += 1
        except (Throttled, CallBudgetExhausted):
            throttled += 1
    print(json.dumps({"answered": answered, "throttled": throttled, "started_at": started_at}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
