"""A Workbench client (and block) bound to one organization refuses any other before a request is sent.

A mistyped provider-organization GUID that the key can also see would otherwise register the
tenant's device under another customer.
"""

from __future__ import annotations

import pickle

import pytest

from blocks.credentials import WorkbenchCredentials
from clients.errors import WorkbenchOrganizationMismatch
from clients.workbench import WorkbenchClient
from tests.conftest import FRESH, OTHER_WORKBENCH_ORG, WORKBENCH_ORG
from tests.sandbox_harness import SandboxHandle

M365 = "o365"
SPEC = {"tenant_id": FRESH, "tenant_name": "Fresh Corp"}


def _client(sandbox: SandboxHandle, organization_id: str | None) -> WorkbenchClient:
    key = sandbox.workbench_key("onboarding")
    return WorkbenchClient(sandbox.base_url("workbench"), authorization=lambda: f"Bearer {key}", ca_bundle=sandbox.ca_bundle, retries=0,
                           organization_id=organization_id)


def test_another_organization_is_refused_before_any_request(step_sandbox: SandboxHandle) -> None:
    client = _client(step_sandbox, WORKBENCH_ORG)
    with pytest.raises(WorkbenchOrganizationMismatch) as lookup:
        client.find_security_devices(OTHER_WORKBENCH_ORG, M365)
    with pytest.raises(WorkbenchOrganizationMismatch):
        client.create_security_device(OTHER_WORKBENCH_ORG, "M365", M365, SPEC)
    assert step_sandbox.request_log(service="workbench") == []
    error = lookup.value
    assert (error.requested, error.allowed) == (OTHER_WORKBENCH_ORG, WORKBENCH_ORG)
    assert OTHER_WORKBENCH_ORG in str(error) and WORKBENCH_ORG in str(error) and "refused before anything was written" in str(error)
    assert "--provider-org" in error.next_action
    assert str(pickle.loads(pickle.dumps(error))) == str(error)  # Prefect keeps it in the task's state


def test_the_binding_may_be_spelt_as_people_paste_it(step_sandbox: SandboxHandle) -> None:
    client = _client(step_sandbox, "{" + WORKBENCH_ORG.upper() + "}")
    device = client.create_security_device(WORKBENCH_ORG, "M365", M365, SPEC)
    assert [d.id for d in client.find_security_devices(WORKBENCH_ORG, M365)] == [device.id]
    client.require_organization(WORKBENCH_ORG.upper())  # compared as GUIDs


def test_a_client_bound_to_no_organization_goes_where_the_key_lets_it(step_sandbox: SandboxHandle) -> None:
    assert _client(step_sandbox, None).find_security_devices(WORKBENCH_ORG, M365) == []


def test_the_block_refuses_a_request_for_another_organization() -> None:
    block = WorkbenchCredentials(api_key="k" * 32, organization_id=WORKBENCH_ORG.upper())
    block.check_organization(WORKBENCH_ORG)
    block.check_organization("{" + WORKBENCH_ORG + "}")
    with pytest.raises(WorkbenchOrganizationMismatch, match=OTHER_WORKBENCH_ORG):
        block.check_organization(OTHER_WORKBENCH_ORG)
    with pytest.raises(WorkbenchOrganizationMismatch):
        block.check_organization("not-a-guid")
    WorkbenchCredentials(api_key="k" * 32).check_organization(OTHER_WORKBENCH_ORG)  # no organization named: the key decides
    assert WorkbenchCredentials(api_key="k" * 32, organization_id="  ").organization_id is None
