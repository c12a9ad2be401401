"""The automations the onboarding relies on, built from settings and the deployments' ids.

Crash recovery (a process worker SIGKILLed, a machine lost): Prefect 3.9 leaves such a run in
Running forever. Its heartbeats stop, so a proactive automation marks it Crashed once it has been
silent for a few heartbeats (Prefect's documented zombie-detection recipe, narrowed to our
deployments); a second automation hands every crashed onboarding run to the resumer deployment,
which restarts it a bounded number of times. The restarted run re-executes from the top and gets
every finished step back from its cache; the step that was cut short observes the tenant again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from prefect.automations import Automation
from prefect.events.actions import ChangeFlowRunState, RunDeployment
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.client.schemas.objects import StateType

from m365_onboarding.settings import OnboardingSettings

TAG = "m365-onboarding"  # marks the automations this project owns (and may update or delete)
PREFIX = "m365-onboarding: "
FLOW_RUN_ID = {"__prefect_kind": "jinja", "template": "{{ flow_run.id }}"}  # the id of the event's flow run


@dataclass(frozen=True)
class DeploymentIds:
    onboarding: UUID
    resumer: UUID


def _deployment(deployment_id: UUID) -> str:
    return f"prefect.deployment.{deployment_id}"


def crash_recovery(settings: OnboardingSettings, ids: DeploymentIds) -> list[Automation]:
    recovery = settings.recovery
    silent = Automation(
        name=f"{PREFIX}mark silent runs Crashed",
        description=(
            f"A running onboarding or resumer run that sent no heartbeat and no state change for "
            f"{recovery.silent_after_s} s lost its process: mark it Crashed so that it is seen and recovered."
        ),
        tags=[TAG],
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "deployment", "prefect.resource.id": [_deployment(ids.onboarding), _deployment(ids.resumer)]},
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=recovery.silent_after_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {recovery.silent_after_s} s: the run's process is gone (worker killed or machine lost).",
            )
        ],
    )
    restart = Automation(
        name=f"{PREFIX}restart crashed onboarding runs",
        description=(
            f"Hands a crashed onboarding run to the resumer deployment, which restarts it (at most "
            f"{recovery.max_recoveries} times); finished steps come back from the cache."
        ),
        tags=[TAG],
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "deployment", "prefect.resource.id": _deployment(ids.onboarding)},
            expect={"prefect.flow-run.Crashed"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        # An explicit Jinja parameter: a bare "{{ flow_run.id }}" is upgraded by Prefect 3.9.1 to
        # "{{ ... | tojson }}", which fails on a UUID ("Object of type UUID is not JSON serializable").
        actions=[RunDeployment(source="selected", deployment_id=ids.resumer, parameters={"flow_run_id": FLOW_RUN_ID})],
    )
    return [silent, restart]


def desired_automations(settings: OnboardingSettings, ids: DeploymentIds) -> list[Automation]:
    """Every automation the project wants on the server, each with a unique name."""
    return crash_recovery(settings, ids)
