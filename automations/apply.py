"""Apply the desired automations: create what is missing, update what differs, delete leftovers.

Keyed by name among the automations tagged as ours, so running it twice leaves one copy of each,
and an automation that is no longer defined (or a duplicate made by hand) is removed. Automations
without our tag are never touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from uuid import UUID

from prefect.blocks.core import Block
from prefect.blocks.notifications import NotificationBlock
from prefect.client.orchestration import SyncPrefectClient
from prefect.events.schemas.automations import AutomationCore

from automations.definitions import TAG, DeploymentIds, desired_automations
from core.settings import OnboardingSettings

logger = logging.getLogger(__name__)


class NotOnServer(RuntimeError):
    """A deployment or block the automations point at is not on the server."""


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def deployment_ids(client: SyncPrefectClient, settings: OnboardingSettings) -> DeploymentIds:
    ids = []
    for name in (settings.recovery.onboarding_deployment, settings.resumer_deployment):
        try:
            ids.append(client.read_deployment_by_name(name).id)
        except Exception as exc:  # ObjectNotFound, or a server that does not answer
            raise NotOnServer(f"deployment {name!r} not found ({type(exc).__name__}): deploy first with `prefect deploy --all`") from exc
    return DeploymentIds(onboarding=ids[0], resumer=ids[1])


def team_block_id(client: SyncPrefectClient, settings: OnboardingSettings) -> UUID | None:
    slug = settings.notifications.team_block
    if slug is None:
        return None
    block_type, name = slug.split("/")
    try:
        document = client.read_block_document_by_name(name=name, block_type_slug=block_type)
    except Exception as exc:  # ObjectNotFound
        raise NotOnServer(f"notification block {slug!r} not found ({type(exc).__name__}): create it first (UI → Blocks, or Python)") from exc
    try:
        is_notification = issubclass(Block.get_block_class_from_key(block_type), NotificationBlock)
    except KeyError:  # a block type this process does not know: let the server's action decide
        is_notification = True
    if not is_notification:
        raise NotOnServer(f"team block {slug!r} is not a notification block: automations send only through one "
                          "(slack-webhook, ms-teams-webhook, custom-webhook, …); email works for the customer channel")
    return document.id


def _sorted_sets(value: object) -> object:
    # Trigger fields such as `expect` are sets: the server returns them as lists in whatever order the
    # set iterated in, which varies with the hash seed, so lists of strings compare as sets.
    if isinstance(value, dict):
        return {key: _sorted_sets(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [_sorted_sets(item) for item in value]
        return sorted(item for item in items if isinstance(item, str)) if all(isinstance(item, str) for item in items) else items
    return value


def _comparable(automation: AutomationCore) -> object:
    dumped = AutomationCore.model_validate(automation.model_dump(exclude={"id", "owner_resource"})).model_dump(mode="json", exclude={"owner_resource"})
    return _sorted_sets(dumped)


def apply_automations(client: SyncPrefectClient, settings: OnboardingSettings, *, dry_run: bool = False) -> ApplyReport:
    """Make the server's automations tagged ``m365-onboarding`` equal to the desired ones."""
    desired = {a.name: a for a in desired_automations(settings, deployment_ids(client, settings), team_block_id(client, settings))}
    if settings.notifications.team_block is None:
        logger.warning("no team notification block configured (NOTIFICATIONS__TEAM_BLOCK): stall and failure alerts are not applied")
    ours = [a for a in client.read_automations() if TAG in (a.tags or [])]
    report = ApplyReport()
    kept: set[str] = set()
    for existing in sorted(ours, key=lambda a: str(a.id)):
        want = desired.get(existing.name)
        if want is None or existing.name in kept:
            report.deleted.append(existing.name)
            if not dry_run:
                client.delete_automation(existing.id)
            continue
        kept.add(existing.name)
        if _comparable(existing) == _comparable(want):
            report.unchanged.append(existing.name)
        else:
            report.updated.append(existing.name)
            if not dry_run:
                client.update_automation(existing.id, AutomationCore(**want.model_dump(exclude={"id", "owner_resource"})))
    for name, want in desired.items():
        if name not in kept:
            report.created.append(name)
            if not dry_run:
                client.create_automation(AutomationCore(**want.model_dump(exclude={"id", "owner_resource"})))
    for verb in ("created", "updated", "deleted"):
        for name in getattr(report, verb):
            logger.info("automation %r %s%s", name, verb, " (dry run)" if dry_run else "")
    return report
