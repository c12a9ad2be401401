"""Guide step 4: add Microsoft 365 as a security device in Workbench.

The guide: in Workbench, open Organization Settings > Security Devices (choosing the customer's
organization if there are several), choose Add Security Device, search for "Microsoft", pick the
Microsoft 365 integration and enter the Directory (tenant) ID and the tenant organization name. The
device is created within seconds; once its connection is healthy Expel polls, data follows (M365
audit events land 60-90 minutes late) and Expel alerts can take 36 to 72 hours while the device is tuned.

Permissions (Workbench service-account API key, not the customer's tenant):
    read (plan): any role, read-only allowed (organizations, plugins, security_devices, alerts)
    apply, guide: Organization Admin, not read-only (POST/PATCH security_devices)

Workbench is the provider's own console, so every change is the provider's (``by="provider"``) and
guide mode, which hands the customer's side to their admin, still registers the device;
:meth:`SecurityDeviceStep.instructions` is the by-hand procedure for a person in Workbench.

The plugin and its ``device_spec`` keys are discovered from ``/plugins`` by display name. Workbench
accepts duplicate devices, so the device's identity is its natural key (organization, plugin slug,
``device_spec.tenant_id``): it is looked up before the POST, the POST is never retried, and after a
POST without an answer the step looks up again before anything else. Other devices for the same
tenant are reported, never touched.

The outcome follows the device after registration: WAITING for the first health check, ACTION_REQUIRED
while unhealthy (with Workbench's reason), WAITING for data (the first vendor alert), CONVERGED once
data flows. The first Expel alert is recorded (``first_expel_alert_at``, ``stage``) for the flow to
report on, but does not hold the step: a quiet tenant may never raise one and is still onboarded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, computed_field

from clients.errors import ApiConnectionError, ServerError
from clients.workbench import Plugin, SecurityDevice
from core.catalogue import QuietEnd, StallRetry, StepName, StepSpec, WaitPolicyName, WaitSpec
from core.results import Action, Change, Outcome, Plan, StepResult
from tasks.admin_consent import recheck_consent
from tasks.context import TenantContext
from tasks.errors import OrganizationNotVisible, PluginSpecUnsupported, StepNotConverged
from tasks.step import diff, wait_for_state
from tasks.unified_audit_log import restart_silent_subscriptions

logger = logging.getLogger("m365_onboarding.steps")

HEALTHY_ENOUGH = ("healthy", "health_checks_not_supported")  # the latter cannot be checked; data decides


class Stage(StrEnum):
    """Where the device is on its way from registered to alerting."""

    ABSENT = "absent"
    VERIFYING = "verifying"  # registered; the first health check has not run yet
    UNHEALTHY = "unhealthy"
    HEALTHY = "healthy"  # connected; no data yet
    DATA_FLOWING = "data_flowing"  # at least one vendor alert
    ALERTING = "alerting"  # at least one Expel alert


class DesiredSecurityDevice(BaseModel):
    """The device the guide asks for, from settings, the tenant and Workbench's plugin catalogue."""

    model_config = ConfigDict(frozen=True)

    organization_id: str = Field(description="The customer's Workbench organization GUID.")
    organization_name: str = Field(description="That organization's name in Workbench.")
    plugin_slug: str = Field(description="Slug of the Microsoft 365 plugin, as /plugins lists it.")
    plugin_name: str = Field(description="The plugin's display name.")
    name: str = Field(description="Name of the security device.")
    device_spec: dict[str, str] = Field(description="tenant_id (the natural key) and tenant_name, as the plugin's schema asks.")


class ObservedSecurityDevice(BaseModel):
    """The tenant's device as Workbench shows it, with the milestones the flow waits on."""

    device_id: str | None = Field(default=None, description="Id of the device, when found.")
    name: str | None = None
    device_spec: dict[str, object] = Field(default_factory=dict)
    status: str | None = Field(default=None, description="healthy, unhealthy, health_checks_not_supported, or null before the first check.")
    status_message: str | None = Field(default=None, description="Workbench's reason, from status_details.")
    status_updated_at: datetime | None = None
    is_verifying_status: bool = False
    created_at: datetime | None = None
    healthy_at: datetime | None = Field(default=None, description="When the check that found it healthy ran.")
    first_vendor_alert_at: datetime | None = Field(default=None, description="First raw alert: data is flowing.")
    first_expel_alert_at: datetime | None = Field(default=None, description="First Expel alert (36-72 h after setup).")
    duplicates: list[str] = Field(default_factory=list, description="Other devices for the same tenant (left alone).")

    @property
    def exists(self) -> bool:
        return self.device_id is not None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def stage(self) -> Stage:
        if not self.exists:
            return Stage.ABSENT
        if self.first_expel_alert_at:
            return Stage.ALERTING
        if self.first_vendor_alert_at:
            return Stage.DATA_FLOWING
        if self.status in HEALTHY_ENOUGH:
            return Stage.HEALTHY
        if self.status is None or self.is_verifying_status:
            return Stage.VERIFYING  # a pending re-check (after a PATCH) makes an old verdict stale
        return Stage.UNHEALTHY


def _spec_changes(desired: DesiredSecurityDevice, observed: ObservedSecurityDevice) -> list[Change]:
    # tenant_id is the key the device was found by (only its case could differ), so it never drifts.
    wanted = {f"device_spec.{k}": v for k, v in desired.device_spec.items() if k != "tenant_id"}
    return [c.model_copy(update={"by": "provider"}) for c in diff(wanted, {f"device_spec.{k}": v for k, v in observed.device_spec.items()})]


class SecurityDeviceStep:
    name = StepName.SECURITY_DEVICE

    def desired(self, ctx: TenantContext) -> DesiredSecurityDevice:
        organizations = {o.id.lower(): o for o in ctx.workbench.list_organizations()}
        organization = organizations.get(ctx.provider_org_id.lower())
        if organization is None:
            # A filter on an invisible organization lists nothing; that must not read as "no device".
            raise OrganizationNotVisible(
                f"tenant {ctx.tenant_id}: the Workbench API key cannot see organization {ctx.provider_org_id} "
                f"(it sees {len(organizations)} organization(s))."
            )
        plugin = ctx.workbench.find_plugin(ctx.settings.provider.workbench_plugin_name)
        name = ctx.settings.provider.workbench_device_name.format(organization_name=ctx.organization_name, tenant_id=ctx.tenant_id)
        return DesiredSecurityDevice(
            organization_id=organization.id,
            organization_name=organization.name,
            plugin_slug=plugin.plugin_slug,
            plugin_name=plugin.display_name,
            name=name,
            device_spec=self._device_spec(ctx, plugin),
        )

    @staticmethod
    def _device_spec(ctx: TenantContext, plugin: Plugin) -> dict[str, str]:
        """The values we know, limited to the keys the plugin's schema declares; refuse if it needs others."""
        known = {"tenant_id": ctx.tenant_id, "tenant_name": ctx.organization_name}
        declared = plugin.spec_keys
        unknown = [k for k in plugin.required_spec_keys if k not in known]
        if unknown or (declared is not None and "tenant_id" not in declared):
            needs = ", ".join(unknown) or "no tenant_id"
            raise PluginSpecUnsupported(
                f"tenant {ctx.tenant_id}: Workbench plugin {plugin.plugin_slug!r} has device_spec fields this step cannot fill: {needs}.")
        return {k: v for k, v in known.items() if declared is None or k in declared}

    def _find(self, ctx: TenantContext, desired: DesiredSecurityDevice) -> list[SecurityDevice]:
        """The devices of this tenant, oldest first: organization and plugin on the server, tenant id here."""
        devices = ctx.workbench.find_security_devices(desired.organization_id, desired.plugin_slug)
        tenant = ctx.tenant_id.lower()
        mine = [d for d in devices if (d.tenant_id or "").lower() == tenant]
        return sorted(mine, key=lambda d: (d.created_at is None, d.created_at or datetime.min, d.id))

    def _observe(self, ctx: TenantContext, desired: DesiredSecurityDevice) -> ObservedSecurityDevice:
        found = self._find(ctx, desired)
        if not found:
            return ObservedSecurityDevice()
        device, others = found[0], found[1:]  # the oldest is the original; later ones are duplicates
        vendor = ctx.workbench.first_vendor_alert(device.id)
        # Expel alerts are raised from vendor alerts, so without one there is nothing to look for.
        expel = ctx.workbench.first_expel_alert(device.id) if vendor else None
        return ObservedSecurityDevice(
            device_id=device.id,
            name=device.name,
            device_spec=dict(device.device_spec),
            status=device.status,
            status_message=device.status_message,
            status_updated_at=device.status_updated_at,
            is_verifying_status=device.is_verifying_status,
            created_at=device.created_at,
            healthy_at=device.status_updated_at if device.status == "healthy" else None,
            first_vendor_alert_at=vendor.created_at if vendor else None,
            first_expel_alert_at=expel.created_at if expel else None,
            duplicates=[d.id for d in others],
        )

    def observe(self, ctx: TenantContext) -> ObservedSecurityDevice:
        return self._observe(ctx, self.desired(ctx))

    def plan(self, ctx: TenantContext, desired: DesiredSecurityDevice, observed: ObservedSecurityDevice) -> Plan:
        notes: list[str] = []
        if observed.duplicates:
            notes.append(f"{len(observed.duplicates)} other device(s) for this tenant are left alone: {', '.join(observed.duplicates)}")
            logger.warning("tenant=%s step=%s duplicates=%s kept=%s", ctx.tenant_id, self.name, ",".join(observed.duplicates), observed.device_id)
        if not observed.exists:
            wanted = {"name": desired.name, "plugin_slug": desired.plugin_slug, **{f"device_spec.{k}": v for k, v in desired.device_spec.items()}}
            changes = [Change(field=field, current=None, desired=value, by="provider") for field, value in wanted.items()]
            return Plan(step=self.name, tenant_id=ctx.tenant_id, action=Action.CREATE, changes=changes, notes=notes)
        # The name is not managed after creation: people may rename the device in Workbench.
        changes = _spec_changes(desired, observed)
        return Plan(step=self.name, tenant_id=ctx.tenant_id, action=Action.UPDATE if changes else Action.NONE, changes=changes, notes=notes)

    def apply(self, ctx: TenantContext, desired: DesiredSecurityDevice, observed: ObservedSecurityDevice, plan: Plan) -> None:
        if plan.action == Action.UPDATE and observed.device_id:
            # The whole device_spec is sent, keeping keys we do not manage; Workbench re-verifies the device after it changes.
            spec = {**observed.device_spec, **{c.field.removeprefix("device_spec."): c.desired for c in plan.changes}}
            ctx.workbench.update_security_device(observed.device_id, {"device_spec": spec})
            logger.info("tenant=%s step=%s action=update device=%s fields=%s", ctx.tenant_id, self.name, observed.device_id,
                        ",".join(c.field for c in plan.changes))
        elif plan.action == Action.CREATE:
            self._create(ctx, desired)

    def _create(self, ctx: TenantContext, desired: DesiredSecurityDevice) -> None:
        """POST once; if no answer came back, find out whether it was applied before anything else."""
        try:
            device = ctx.workbench.create_security_device(desired.organization_id, desired.name, desired.plugin_slug, desired.device_spec)
        except (ApiConnectionError, ServerError) as failure:
            logger.warning("tenant=%s step=%s create outcome unknown (%s); looking the device up", ctx.tenant_id, self.name, type(failure).__name__)
            found = self._find_after_failed_create(ctx, desired)
            if not found:
                logger.warning("tenant=%s step=%s device not found after the failed create; not re-posting, the next run looks up first",
                               ctx.tenant_id, self.name)
                raise  # the POST's own error: the lookups found nothing to add to it
            logger.info("tenant=%s step=%s adopted device=%s created by the unanswered POST", ctx.tenant_id, self.name, found[0].id)
            return
        logger.info("tenant=%s step=%s action=create device=%s plugin=%s", ctx.tenant_id, self.name, device.id, desired.plugin_slug)

    def _find_after_failed_create(self, ctx: TenantContext, desired: DesiredSecurityDevice) -> list[SecurityDevice]:
        """The device, if the unanswered POST created it; the server may still be working on it, so wait the replication deadline."""
        try:
            return wait_for_state(ctx, lambda: self._find(ctx, desired), bool, what="security device after a failed create", consecutive=1)
        except StepNotConverged:
            return []

    def verify(self, ctx: TenantContext, desired: DesiredSecurityDevice) -> ObservedSecurityDevice:
        return wait_for_state(
            ctx,
            lambda: self._observe(ctx, desired),
            lambda o: o.exists and not _spec_changes(desired, o),
            what=f"Workbench security device {desired.name!r}",
            differing=lambda o: [c.field for c in _spec_changes(desired, o)] if o.exists else [self.name],
        )

    def settled(self, observed: ObservedSecurityDevice) -> tuple[Outcome, str | None]:
        stage = observed.stage
        if stage == Stage.ABSENT:
            return Outcome.WAITING, "the security device to be registered"
        if stage == Stage.VERIFYING:
            return Outcome.WAITING, "the first health check" if observed.status is None else "the health check after the change"
        if stage == Stage.UNHEALTHY:
            return Outcome.ACTION_REQUIRED, f"the device to become healthy; Workbench says: {observed.status_message or 'no reason given'}"
        if stage == Stage.HEALTHY:
            return Outcome.WAITING, "data to flow (first vendor alert)"
        return Outcome.CONVERGED, None

    def instructions(self, ctx: TenantContext, desired: DesiredSecurityDevice, plan: Plan) -> str:
        spec = desired.device_spec
        steps = [
            "Sign in to Expel Workbench as an Organization Admin.",
            f"In the side menu open Organization Settings > Security Devices; if asked, choose the organization {desired.organization_name}.",
        ]
        if plan.action == Action.CREATE:
            steps += [
                f"Choose Add Security Device, type \u201cMicrosoft\u201d in the search box and select the {desired.plugin_name} integration.",
                f"In the wizard enter the Directory (tenant) ID {spec['tenant_id']}"
                + (f" and the tenant organization name {spec['tenant_name']!r}" if "tenant_name" in spec else "")
                + f", name the device {desired.name!r}, and finish the remaining prompts.",
                (
                    "The device appears within a few seconds. Its health is checked next; data follows once it is healthy, "
                    "and Expel alerts can take 36 to 72 hours."
                ),
            ]
        else:
            fields = "; ".join(f"{c.field.removeprefix('device_spec.')} to {c.desired!r}" for c in plan.changes)
            steps.append(f"Open the {desired.plugin_name} device for tenant {spec['tenant_id']} and change {fields}; save.")
        return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))


def _stage_in(*stages: Stage) -> Callable[[StepResult], bool]:
    return lambda result: result.observed.get("stage") in stages


def _alerting(result: StepResult) -> bool:
    return result.observed.get("first_expel_alert_at") is not None


HEALTHY = WaitSpec(
    name=StepName.DEVICE_HEALTHY,
    label="Device healthy",
    title="Security device healthy",
    policy=WaitPolicyName.DEVICE_HEALTHY,
    done=_stage_in(Stage.HEALTHY, Stage.DATA_FLOWING, Stage.ALERTING),
    waiting_for="the device's first healthy check",
    stall_next_action="Open the device in Workbench and read its status details; consent was re-checked automatically.",
    on_stall=StallRetry("recheck_admin_consent", recheck_consent),  # an unhealthy device is most often a withdrawn permission
)
DATA = WaitSpec(
    name=StepName.FIRST_DATA,
    label="Data flowing",
    title="Data flowing (60–90 minutes, first content up to 12 h)",
    policy=WaitPolicyName.FIRST_DATA,
    done=_stage_in(Stage.DATA_FLOWING, Stage.ALERTING),
    waiting_for="data to flow (first vendor alert)",
    stall_next_action="Check the Management Activity subscriptions and the device's status in Workbench.",
    on_stall=StallRetry("restart_management_subscriptions", restart_silent_subscriptions),  # a subscription that delivers nothing
)
ALERTS = WaitSpec(
    name=StepName.FIRST_ALERTS,
    label="First alerts",
    title="First alerts (36–72 h)",
    policy=WaitPolicyName.FIRST_ALERTS,
    done=_alerting,
    waiting_for="the first Expel alert (36-72 h)",
    stall_next_action="Data flows but nothing was raised yet: confirm with the SOC that the tenant is quiet, not unmonitored.",
    # A quiet tenant is onboarded; it just raised nothing yet.
    quiet_end=QuietEnd(outcome="onboarded: data flowing, no alert in the alert window",
                       detail="no alert yet in the window; the device is healthy and data flows"),
)
SPEC = StepSpec(
    name=StepName.SECURITY_DEVICE,
    label="Device registered",
    title="Security device registered in Workbench",
    guide_step=4,
    permissions=None,  # the Workbench API key of an Organization Admin, not an Entra permission
    step=SecurityDeviceStep(),
    waits=(HEALTHY, DATA, ALERTS),
)
