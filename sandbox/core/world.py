"""The whole emulated cloud: the provider's app, every customer tenant, Workbench, clock, faults, log.

State changes that the scenario schedules (an admin who consents two hours in) are applied lazily:
every request first calls :meth:`World.advance`, which runs what has come due. There is no
background thread, so a scenario is deterministic for a given sequence of requests and clock.
"""

from __future__ import annotations

import secrets as pysecrets
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sandbox.core.catalog import DIRECTORY_ROLES, RESOURCES, find_permission
from sandbox.core.clock import ScenarioClock
from sandbox.core.faults import FaultRegistry
from sandbox.core.rate_limits import RateLimits
from sandbox.core.request_log import RequestLog
from sandbox.core.scenario import Scenario, TenantSpec
from sandbox.core.tokens import TokenSigner
from sandbox.exchange.models import ExchangeOrg
from sandbox.graph.models import Directory
from sandbox.login.models import AppRegistration, ConsentState, build_app_registration
from sandbox.management_activity.models import ActivityFeed
from sandbox.workbench.models import ApiKeyInfo, TenantStatus, WorkbenchState

GLOBAL_READER = DIRECTORY_ROLES["Global Reader"]


@dataclass
class Tenant:
    """One customer tenant and the state each emulated service keeps for it."""

    spec: TenantSpec
    directory: Directory
    exchange: ExchangeOrg
    activity: ActivityFeed
    consent: ConsentState

    @property
    def id(self) -> str:
        return self.spec.id


class World:
    """Everything the sandbox knows. Handlers take ``world.lock`` around reads and writes."""

    def __init__(self, scenario: Scenario, state_dir: Path, time_scale: float | None = None) -> None:
        self.scenario = scenario
        self.state_dir = state_dir
        self.credentials_dir = state_dir / "credentials"
        self.credentials_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.clock = ScenarioClock(time_scale if time_scale is not None else scenario.time_scale)
        self.faults = FaultRegistry()
        self.log = RequestLog()
        self.signer = TokenSigner(state_dir / "token-signing-key.pem")
        self.base_urls: dict[str, str] = {}
        self._build()

    def _build(self) -> None:
        now = self.clock.now()
        # Scheduled actions ("consent after 2h") count from the last build, so a reset starts them over.
        self.started_at = now
        self.app: AppRegistration = build_app_registration(
            self.scenario.provider.app, self.scenario.provider.tenant_id, self.credentials_dir, now
        )
        self.tenants: dict[str, Tenant] = {}
        for spec in self.scenario.tenants:
            self.tenants[spec.id.lower()] = self._build_tenant(spec, now)
        self.workbench = WorkbenchState(self.scenario.workbench, self._api_keys(), self, now)
        self.rate_limits = RateLimits(self.scenario.rate_limits)  # a reset starts every window empty
        for fault in self.scenario.faults:
            self.faults.add(fault, now)

    def reset(self) -> None:
        """Back to the scenario's starting state; the clock keeps running, faults (and their ids) and log are cleared."""
        with self.lock:
            self.faults.clear()
            self.log.clear()
            self._build()

    def _api_keys(self) -> dict[str, ApiKeyInfo]:
        keys: dict[str, ApiKeyInfo] = {}
        for spec in self.scenario.workbench.api_keys:
            value = spec.value
            if value is None:
                path = self.credentials_dir / f"workbench-key-{spec.name}.txt"
                if path.exists():
                    value = path.read_text(encoding="utf-8").strip()
                else:
                    value = pysecrets.token_urlsafe(32)
                    path.touch(mode=0o600)
                    path.write_text(value + "\n", encoding="utf-8")
            keys[value] = ApiKeyInfo(spec.name, spec.organization, spec.role, spec.read_only)
        return keys

    def _build_tenant(self, spec: TenantSpec, now: datetime) -> Tenant:
        directory = Directory(spec.id, spec.display_name, spec.initial_domain, self.scenario.replication_lag, now)
        for guest in spec.existing.guests:
            user = directory.add_guest(
                guest.email, guest.display_name, now, address_in=guest.address_in, accepted=guest.accepted, lag=False
            )
            if guest.global_reader:
                directory.assign_role(GLOBAL_READER, user.id, "/", now, lag=False)
        for partner in spec.existing.partners:
            body: dict[str, Any] = {"tenantId": partner.tenant_id}
            if partner.inbound_trust is not None:
                body["inboundTrust"] = dict(partner.inbound_trust)
            if partner.automatic_user_consent_settings is not None:
                body["automaticUserConsentSettings"] = dict(partner.automatic_user_consent_settings)
            if partner.b2b_collaboration_inbound is not None:
                body["b2bCollaborationInbound"] = partner.b2b_collaboration_inbound
            directory.create_partner(body, now, lag=False)
        tenant = Tenant(
            spec=spec,
            directory=directory,
            exchange=ExchangeOrg.create(
                enabled=spec.audit.enabled,
                dehydrated=spec.audit.dehydrated,
                activation_delay=spec.audit.activation_delay,
                now=now,
            ),
            activity=ActivityFeed(spec.id, spec.audit, list(spec.existing.subscriptions), now),
            consent=ConsentState(spec.consent),
        )
        if spec.consent.given == "at_start":
            self.grant_consent(tenant, now, lag=False)
        return tenant

    # --- lookups --------------------------------------------------------------------------------
    def tenant(self, tenant_ref: str) -> Tenant | None:
        """A tenant by id or by its initial domain (case-insensitive)."""
        ref = tenant_ref.lower()
        if ref in self.tenants:
            return self.tenants[ref]
        for tenant in self.tenants.values():
            if tenant.spec.initial_domain.lower() == ref:
                return tenant
        return None

    def is_provider_tenant(self, tenant_ref: str) -> bool:
        return tenant_ref.lower() == self.scenario.provider.tenant_id.lower()

    # --- consent ----------------------------------------------------------------------------------
    def grant_consent(self, tenant: Tenant, now: datetime, lag: bool = True) -> None:
        """What the admin's Accept does: service principal, app role grants, the app's directory roles."""
        tenant.directory.consent_app(
            self.app.client_id,
            self.app.display_name,
            self.app.owner_tenant_id,
            self.app.required_grants(tenant.spec.consent.withhold),
            tenant.spec.consent.app_directory_roles,
            now,
            lag=lag,
        )
        tenant.consent.granted_at = tenant.consent.granted_at or now
        tenant.consent.refused_at = None

    def refuse_consent(self, tenant: Tenant, now: datetime) -> None:
        if tenant.consent.granted_at is None:
            tenant.consent.refused_at = now

    def advance(self) -> datetime:
        """Apply whatever the scenario scheduled up to now; return the current scenario time."""
        now = self.clock.now()
        with self.lock:
            started = self.started_at
            for tenant in self.tenants.values():
                consent = tenant.consent
                if consent.scheduled_action_done or consent.spec.after is None:
                    continue
                if now >= started + consent.spec.after:
                    consent.scheduled_action_done = True
                    if consent.spec.given == "late":
                        self.grant_consent(tenant, now)
                    elif consent.spec.given == "refused":
                        self.refuse_consent(tenant, now)
        return now

    # --- what Workbench can see ---------------------------------------------------------------------
    def tenant_status(self, tenant_id: str, now: datetime) -> TenantStatus | None:
        tenant = self.tenant(tenant_id)
        if tenant is None:
            return None
        granted: set[str] = set()
        for resource in RESOURCES:
            granted.update(tenant.directory.granted_roles(self.app.client_id, resource, now))
        missing = [p for p in self.app.permissions if p not in granted and find_permission(p) is not None]
        return TenantStatus(
            tenant_id=tenant.id,
            display_name=tenant.spec.display_name,
            workbench_organization=tenant.spec.workbench_organization,
            consent_granted=tenant.consent.granted_at is not None,
            missing_permissions=missing,
            audit_active_since=tenant.exchange.audit_active_since(),
            device=tenant.spec.device,
        )

    def tenant_snapshot(self, tenant: Tenant, now: datetime) -> dict[str, Any]:
        return {
            "id": tenant.id,
            "displayName": tenant.spec.display_name,
            "initialDomain": tenant.spec.initial_domain,
            "consent": {
                "status": tenant.consent.status,
                "grantedAt": tenant.consent.granted_at,
                "refusedAt": tenant.consent.refused_at,
                "consentPageViews": tenant.consent.consent_page_views,
            },
            "directory": tenant.directory.snapshot(now),
            "exchange": {
                "isDehydrated": tenant.exchange.dehydrated,
                "unifiedAuditLogIngestionEnabled": tenant.exchange.ingestion_enabled,
                "auditActiveSince": tenant.exchange.audit_active_since(),
                "auditActive": tenant.exchange.audit_active(now),
            },
            "activity": tenant.activity.snapshot(now),
        }
