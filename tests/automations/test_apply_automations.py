"""Applying the automations against a real Prefect server: idempotent, narrow, and only ours."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from prefect.automations import Automation
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import DeploymentCreate
from prefect.events.actions import CancelFlowRun
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.testing.utilities import prefect_test_harness

from automations.apply import DeploymentMissing, apply_automations
from automations.definitions import TAG
from m365_onboarding.settings import OnboardingSettings, RecoverySettings


@pytest.fixture(scope="module")
def client() -> Iterator[SyncPrefectClient]:
    with prefect_test_harness(server_startup_timeout=120), get_client(sync_client=True) as client:
        yield client


def _deploy(client: SyncPrefectClient) -> dict[str, str]:
    ids = {}
    for flow_name in ("onboard-tenant", "resume-onboarding"):
        flow_id = client.create_flow_from_name(flow_name)
        ids[flow_name] = str(client.create_deployment(flow_id=flow_id, name=flow_name, entrypoint=f"flows/x.py:{flow_name}"))
    return ids


def _ours(client: SyncPrefectClient) -> list[Automation]:
    return [a for a in client.read_automations() if TAG in (a.tags or [])]


def test_apply_needs_the_deployments(client: SyncPrefectClient) -> None:
    settings = OnboardingSettings(resumer_deployment="nowhere/none")
    with pytest.raises(DeploymentMissing, match="deployment 'onboard-tenant/onboard-tenant' not found|deployment 'nowhere/none' not found"):
        apply_automations(client, settings)


def test_applying_twice_leaves_one_copy_of_each_and_only_touches_ours(client: SyncPrefectClient) -> None:
    ids = _deploy(client)
    foreign = client.create_automation(AutomationCore(
        name="someone else's", trigger=EventTrigger(expect={"x.y"}, posture=Posture.Reactive, threshold=1, within=timedelta(0)),
        actions=[CancelFlowRun()]))
    settings = OnboardingSettings()

    first = apply_automations(client, settings)
    assert sorted(first.created) == ["m365-onboarding: mark silent runs Crashed", "m365-onboarding: restart crashed onboarding runs"]
    second = apply_automations(client, settings)
    assert second.created == [] and second.updated == [] and second.deleted == []
    assert sorted(second.unchanged) == sorted(first.created)
    assert sorted(a.name for a in _ours(client)) == sorted(first.created)

    silent = next(a for a in _ours(client) if a.name.endswith("Crashed"))
    assert silent.trigger.within == timedelta(seconds=540)  # three missed heartbeats of 180 s
    related = silent.trigger.model_dump(mode="json")["match_related"]
    assert related["prefect.resource.id"] == [f"prefect.deployment.{ids['onboard-tenant']}", f"prefect.deployment.{ids['resume-onboarding']}"]
    restart = next(a for a in _ours(client) if a.name.endswith("runs"))
    assert str(restart.actions[0].deployment_id) == ids["resume-onboarding"]
    assert restart.actions[0].parameters == {"flow_run_id": {"__prefect_kind": "jinja", "template": "{{ flow_run.id }}"}}

    # A hand-made duplicate is removed, a changed setting updates in place, a foreign automation stays.
    client.create_automation(AutomationCore(**silent.model_dump(exclude={"id", "owner_resource"})))
    faster = OnboardingSettings(recovery=RecoverySettings(heartbeat_s=30))
    third = apply_automations(client, faster)
    assert third.deleted == ["m365-onboarding: mark silent runs Crashed"] and third.updated == ["m365-onboarding: mark silent runs Crashed"]
    assert len(_ours(client)) == 2
    assert next(a for a in _ours(client) if a.name.endswith("Crashed")).trigger.within == timedelta(seconds=90)
    assert any(a.id == foreign for a in client.read_automations())

    dry = apply_automations(client, settings, dry_run=True)
    assert dry.updated == ["m365-onboarding: mark silent runs Crashed"]
    assert next(a for a in _ours(client) if a.name.endswith("Crashed")).trigger.within == timedelta(seconds=90)
