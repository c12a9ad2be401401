"""The automations the onboarding relies on, built from settings and the deployments' ids.

Crash recovery (a process worker SIGKILLed, a machine lost): Prefect 3.9 leaves such a run in
Running forever. Its heartbeats stop, so a proactive automation marks it Crashed once it has been
silent for a few heartbeats (Prefect's documented zombie-detection recipe, narrowed to our
deployments); a second automation hands every crashed onboarding run to the resumer deployment,
which restarts it a bounded number of times. The restarted run re-executes from the top and gets
every finished step back from its cache; the step that was cut short observes the tenant again.
A third does the same for a crashed wait check (a resumer run a suspended onboarding run
scheduled): without it the suspended run would have no check left and sleep until a person woke it.
A fourth hands over once more a run or check still Crashed minutes later: its restart was refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, RunDeployment, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture

from core.catalogue import StepName
from core.settings import OnboardingSettings
from core.tags import WAIT_CHECK_TAG
from tasks.catalogue import CATALOGUE

TAG = "m365-onboarding"  # marks the automations this project owns (and may update or delete)
PREFIX = "m365-onboarding: "
FLOW_RUN_ID = {"__prefect_kind": "jinja", "template": "{{ flow_run.id }}"}  # the id of the event's flow run


@dataclass(frozen=True)
class DeploymentIds:
    onboarding: UUID
    resumer: UUID


def _human(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:g} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min"


LINK = "{{ flow_run|ui_url }}"
MIN_PROACTIVE_S = 10  # Prefect refuses a shorter window for a proactive trigger


def _deployment(deployment_id: UUID) -> str:
    return f"prefect.deployment.{deployment_id}"


ResourceSpec = dict[str, str | list[str]]  # what a trigger's match or match_related is


def _restart_crashed(name: str, description: str, runs: ResourceSpec | list[ResourceSpec], ids: DeploymentIds,
                     again_after_s: int | None = None) -> Automation:
    """Each crashed run matching ``runs`` (related resources) is handed to the resumer, which reschedules it.

    At once, or with ``again_after_s`` only when the run is still Crashed that long after its crash.
    """
    if again_after_s is None:
        when = {"expect": {"prefect.flow-run.Crashed"}, "posture": Posture.Reactive, "within": timedelta(0)}
    else:
        when = {"after": {"prefect.flow-run.Crashed"}, "expect": {"prefect.flow-run.*"}, "for_each": {"prefect.resource.id"},
                "posture": Posture.Proactive, "within": timedelta(seconds=max(MIN_PROACTIVE_S, again_after_s))}
    return Automation(
        name=name,
        description=description,
        tags=[TAG],
        trigger=EventTrigger(match={"prefect.resource.id": "prefect.flow-run.*"}, match_related=runs, threshold=1, **when),
        # An explicit Jinja parameter: a bare "{{ flow_run.id }}" is upgraded by Prefect 3.9.1 to
        # "{{ ... | tojson }}", which fails on a UUID ("Object of type UUID is not JSON serializable").
        actions=[RunDeployment(source="selected", deployment_id=ids.resumer, parameters={"flow_run_id": FLOW_RUN_ID})],
    )


# What a run that has its process does next: a state change. (Not any event: a killed run's last
# pull-step event would otherwise count as a sign of life.)
NEXT_STATES = {f"prefect.flow-run.{state}" for state in ("Running", "Completed", "Failed", "Cancelled", "Cancelling", "Crashed", "Paused",
                                                         "Suspended", "Scheduled", "AwaitingRecovery", "Pending", "Submitting")}


def _mark_silent_crashed(name: str, description: str, after: set[str], message: str, silent_s: int, ids: DeploymentIds,
                         expect: set[str] | None = None) -> Automation:
    """An onboarding or resumer run with none of ``expect`` (any flow-run event by default) ``silent_s`` after one of ``after`` is marked Crashed."""
    return Automation(
        name=name,
        description=description,
        tags=[TAG],
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "deployment", "prefect.resource.id": [_deployment(ids.onboarding), _deployment(ids.resumer)]},
            after=after,
            expect=expect or {"prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=silent_s),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=message)],
    )


def crash_recovery(settings: OnboardingSettings, ids: DeploymentIds) -> list[Automation]:
    recovery = settings.recovery
    silent_s = recovery.silent_after_s
    silent = _mark_silent_crashed(
        f"{PREFIX}mark silent runs Crashed",
        f"A running onboarding or resumer run that sent no heartbeat and no state change for "
        f"{silent_s} s lost its process: mark it Crashed so that it is seen and recovered.",
        {"prefect.flow-run.heartbeat"},
        f"No heartbeat for {silent_s} s: the run's process is gone (worker killed or machine lost).",
        silent_s, ids,
    )
    # A worker killed between taking a run and its process starting leaves the run Pending or
    # Submitting (a Pending state of Prefect 3.9's workers), with no heartbeat ever: the same silence.
    never_started = _mark_silent_crashed(
        f"{PREFIX}catch runs that never started",
        f"An onboarding or resumer run Pending or Submitting for {silent_s} s with no state change since never got "
        f"its process (the worker died while starting it): mark it Crashed so that it is seen and recovered.",
        {"prefect.flow-run.Pending", "prefect.flow-run.Submitting"},
        f"Pending for {silent_s} s: the worker never started the run's process.",
        silent_s, ids, expect=NEXT_STATES,
    )
    onboarding_runs: ResourceSpec = {"prefect.resource.role": "deployment", "prefect.resource.id": _deployment(ids.onboarding)}
    restart = _restart_crashed(
        f"{PREFIX}restart crashed onboarding runs",
        f"Hands a crashed onboarding run to the resumer deployment, which restarts it (at most "
        f"{recovery.max_recoveries} times); finished steps come back from the cache.",
        onboarding_runs,
        ids,
    )
    restart_check = _restart_crashed(
        f"{PREFIX}restart crashed wait checks",
        f"Hands a crashed wait check (a resumer run scheduled by a suspended onboarding run) to the resumer "
        f"deployment, which reschedules it (at most {recovery.max_recoveries} times) so that the run is not left "
        f"without a check.",
        # Only scheduled checks carry the tag; the recovery runs these automations start do not, so a
        # check that crashes for good cannot start an endless chain of recoveries.
        [{"prefect.resource.role": "deployment", "prefect.resource.id": _deployment(ids.resumer)},
         {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{WAIT_CHECK_TAG}"}],
        ids,
    )
    # Prefect does not retry an action the server refused (a 503 under a burst on SQLite): a run
    # still Crashed later, with no state change since, is handed over once more. Wait checks too:
    # each crash fires this once, and the resumer's per-run limit bounds any chain.
    again = recovery.restart_again_after_s
    restart_again = _restart_crashed(
        f"{PREFIX}restart runs still crashed",
        f"Hands an onboarding run or wait check still Crashed {_human(again)} after its crash (its restart was refused "
        f"or not started) to the resumer once more; the resumer's limit of {recovery.max_recoveries} restarts per run still holds.",
        {"prefect.resource.role": "deployment", "prefect.resource.id": [_deployment(ids.onboarding), _deployment(ids.resumer)]},
        ids,
        again_after_s=again,
    )
    return [silent, never_started, restart, restart_check, restart_again]


def _tenant_step(step: StepName) -> dict[str, str]:
    return {"prefect.resource.id": "m365.tenant.*", "onboarding.step": step.value}


def notifications(settings: OnboardingSettings, ids: DeploymentIds, team_block: UUID) -> list[Automation]:
    """Tell the team about stalled steps, failed runs, runs no worker picks up, retries and completions."""
    waits = settings.waits
    scale = f" (time scale {waits.time_scale:g})" if waits.time_scale != 1 else ""
    onboarding_runs = {"prefect.resource.role": "deployment", "prefect.resource.id": _deployment(ids.onboarding)}
    result = []
    for wait in CATALOGUE.waits():  # one stall alert per wait, with the wait's own threshold and next action
        step, policy, next_action = wait.name, waits.base(wait.policy), wait.stall_next_action
        result.append(Automation(
            name=f"{PREFIX}{step} stalled",
            description=f"For each tenant: {step} waiting and not completed within {_human(policy.stall_s)}{scale}.",
            tags=[TAG],
            trigger=EventTrigger(
                match=_tenant_step(step),
                after={"onboarding.step.waiting"},
                expect={"onboarding.step.completed", "onboarding.step.failed"},
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=max(MIN_PROACTIVE_S, policy.stall_s / waits.time_scale)),
            ),
            actions=[SendNotification(
                block_document_id=team_block,
                subject=f"Onboarding stalled: {{{{ event.resource.name }}}}, {step}",
                body=(
                    f"Onboarding of {{{{ event.resource.name }}}} (tenant {{{{ event.payload.tenant_id }}}}) is stalled at {step}: "
                    f"waiting for more than {_human(policy.stall_s)}{scale}, expected within {_human(policy.expected_s)}.\n"
                    f"Last observed: {{{{ event.payload.detail }}}}; waiting for: {{{{ event.payload.waiting_for }}}}.\n"
                    f"Next action: {next_action}\nFlow run: {LINK}"
                ),
            )],
        ))
    result.append(Automation(
        name=f"{PREFIX}onboarding run failed or crashed",
        description="An onboarding run ended Failed or Crashed (a crashed run is also restarted automatically).",
        tags=[TAG],
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"}, match_related=onboarding_runs,
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}, posture=Posture.Reactive, threshold=1, within=timedelta(0),
        ),
        actions=[SendNotification(
            block_document_id=team_block,
            subject="Onboarding run {{ flow_run.name }} {{ flow_run.state.name }}",
            body=("Onboarding run {{ flow_run.name }} ended {{ flow_run.state.name }}: {{ flow_run.state.message }}\n"
                  f"Next action: read the run's logs and the tenant's checklist; a Crashed run is restarted automatically "
                  f"up to {settings.recovery.max_recoveries} times.\nFlow run: {LINK}"),
        )],
    ))
    result.append(Automation(
        name=f"{PREFIX}resumed run not picked up",
        description=f"A resumed onboarding run not Running within {_human(settings.notifications.no_worker_after_s)}: no worker serves the pool.",
        tags=[TAG],
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"}, match_related=onboarding_runs,
            after={"prefect.flow-run.Resuming", "prefect.flow-run.AwaitingRecovery"}, expect={"prefect.flow-run.Running"},
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=max(MIN_PROACTIVE_S, settings.notifications.no_worker_after_s / waits.time_scale)),
        ),
        actions=[SendNotification(
            block_document_id=team_block,
            subject="No worker picks up onboarding run {{ flow_run.name }}",
            body=(f"Onboarding run {{{{ flow_run.name }}}} was resumed but has not started for {_human(settings.notifications.no_worker_after_s)}.\n"
                  f"Next action: start a worker on the pool (prefect worker start --pool <pool>).\nFlow run: {LINK}"),
        )],
    ))
    result.append(Automation(
        name=f"{PREFIX}onboarding run late",
        description="A scheduled onboarding or resumer run is Late: no worker picked it up on time.",
        tags=[TAG],
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "deployment", "prefect.resource.id": [_deployment(ids.onboarding), _deployment(ids.resumer)]},
            expect={"prefect.flow-run.Late"}, posture=Posture.Reactive, threshold=1, within=timedelta(0),
        ),
        actions=[SendNotification(
            block_document_id=team_block,
            subject="Late: {{ flow_run.name }}",
            body=f"Run {{{{ flow_run.name }}}} is Late: no worker picked it up on time.\nNext action: start a worker on the pool.\nFlow run: {LINK}",
        )],
    ))
    result.append(Automation(
        name=f"{PREFIX}automatic retry on stall",
        description="A stalled step retried something by itself (e.g. re-checked consent); the team hears of it once.",
        tags=[TAG],
        trigger=EventTrigger(
            match={"prefect.resource.id": "m365.tenant.*"}, expect={"onboarding.step.retried"},
            posture=Posture.Reactive, threshold=1, within=timedelta(0),
        ),
        actions=[SendNotification(
            block_document_id=team_block,
            subject="Automatic retry: {{ event.resource.name }}, {{ event.payload.step }}",
            body=("{{ event.resource.name }} (tenant {{ event.payload.tenant_id }}): {{ event.payload.step }} stalled, so "
                  "{{ event.payload.action }} ran by itself. Found: {{ event.payload.detail }}\nFlow run: " + LINK),
        )],
    ))
    result.append(Automation(
        name=f"{PREFIX}tenant onboarded",
        description="A tenant finished onboarding (first alerts, or a quiet alert window).",
        tags=[TAG],
        trigger=EventTrigger(
            match=_tenant_step(CATALOGUE.milestones()[-1].name), expect={"onboarding.step.completed"},
            posture=Posture.Reactive, threshold=1, within=timedelta(0),
        ),
        actions=[SendNotification(
            block_document_id=team_block,
            subject="Onboarded: {{ event.resource.name }}",
            body="{{ event.resource.name }} (tenant {{ event.payload.tenant_id }}) is onboarded: {{ event.payload.detail }}\nFlow run: " + LINK,
        )],
    ))
    return result


def desired_automations(settings: OnboardingSettings, ids: DeploymentIds, team_block: UUID | None = None) -> list[Automation]:
    """Every automation the project wants on the server, each with a unique name."""
    return crash_recovery(settings, ids) + (notifications(settings, ids, team_block) if team_block else [])
