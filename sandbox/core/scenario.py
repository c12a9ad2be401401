"""The scenario file: which tenants exist, how far each is configured, and how each behaves over time.

A scenario is YAML validated by the pydantic models below (unknown keys are refused, so a typo is an
error, not a silently ignored setting). Every duration is real-world time ("90m", "36h") and is
compressed by ``--time-scale``. ``scenarios/default.yaml`` is the documented example.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from sandbox.core.catalog import DIRECTORY_ROLES, find_permission
from sandbox.core.clock import parse_duration
from sandbox.core.faults import FaultSpec
from sandbox.core.rate_limits import PUBLISHED_LIMITS, RateLimitSpec

Duration = Annotated[timedelta, BeforeValidator(lambda v: v if isinstance(v, timedelta) else parse_duration(v))]
Guid = Annotated[str, BeforeValidator(lambda v: str(uuid.UUID(str(v))))]

EXPEL_TENANT_ID = "1cde81fd-b430-4035-b24d-709921922876"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretSpec(_Strict):
    """A client secret of the provider's app. ``generate`` writes a fresh one to the state folder."""

    name: str
    value: str | None = None
    generate: bool = False
    expires_after: Duration | None = Field(default=None, description="Expiry, from sandbox start.")
    expired: bool = Field(default=False, description="Already expired at start.")

    @model_validator(mode="after")
    def _one_source(self) -> SecretSpec:
        if (self.value is None) == (not self.generate):
            raise ValueError("give exactly one of 'value' or 'generate: true'")
        return self


class CertificateSpec(_Strict):
    """A certificate credential of the provider's app: a PEM file, or one generated into the state folder."""

    name: str
    path: Path | None = None
    generate: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> CertificateSpec:
        if (self.path is None) == (not self.generate):
            raise ValueError("give exactly one of 'path' or 'generate: true'")
        return self


class AppSpec(_Strict):
    """The provider's multi-tenant app registration, as it lives in the provider's tenant."""

    client_id: Guid = "6c1f6e0a-4a61-4f0e-9d2f-7e6e3a1f5b21"
    display_name: str = "Expel Microsoft 365 Integration"
    redirect_uris: list[str] = ["https://127.0.0.1:8443/_sandbox/consent-landing"]
    permissions: list[str] = Field(
        default=[
            "User.Read.All",
            "User.Invite.All",
            "RoleManagement.ReadWrite.Directory",
            "Policy.Read.All",
            "Policy.ReadWrite.CrossTenantAccess",
            "Organization.Read.All",
            "Application.Read.All",
            "Exchange.ManageAsApp",
            "ActivityFeed.Read",
        ],
        description="Application permissions in the app's required resource access.",
    )
    unconsented_error: Literal["AADSTS700016", "AADSTS7000229"] = Field(
        default="AADSTS700016",
        description="Which of the two errors seen in the wild a token request gets before consent.",
    )
    secrets: list[SecretSpec] = [SecretSpec(name="primary", generate=True)]
    certificates: list[CertificateSpec] = [CertificateSpec(name="primary", generate=True)]

    @model_validator(mode="after")
    def _known_permissions(self) -> AppSpec:
        unknown = [p for p in self.permissions if find_permission(p) is None]
        if unknown:
            raise ValueError(f"unknown permission(s) {unknown}; the sandbox knows Graph, Exchange and Management API roles")
        return self


class ProviderSpec(_Strict):
    """The MDR provider: its own tenant and its multi-tenant app."""

    tenant_id: Guid = EXPEL_TENANT_ID
    display_name: str = "Expel"
    app: AppSpec = AppSpec()


class ConsentSpec(_Strict):
    """How the customer's admin answers the admin-consent request."""

    given: Literal["at_start", "late", "never", "refused"] = "at_start"
    after: Duration | None = Field(default=None, description="For late/refused: when the admin acts.")
    withhold: list[str] = Field(default=[], description="Permissions left out of the grant.")
    app_directory_roles: list[str] = Field(
        default=["Exchange Administrator"],
        description="Directory roles the admin gives the app's service principal (Exchange Online reads them).",
    )

    @model_validator(mode="after")
    def _check(self) -> ConsentSpec:
        if self.given in ("late", "refused") and self.after is None:
            raise ValueError(f"consent given '{self.given}' needs 'after' (e.g. after: 2h)")
        unknown_roles = [r for r in self.app_directory_roles if r not in DIRECTORY_ROLES]
        if unknown_roles:
            raise ValueError(f"unknown directory role(s) {unknown_roles}; known: {sorted(DIRECTORY_ROLES)}")
        unknown = [p for p in self.withhold if find_permission(p) is None]
        if unknown:
            raise ValueError(f"unknown permission(s) in withhold: {unknown}")
        return self


class AuditSpec(_Strict):
    """The tenant's unified audit log and how long it takes to come alive."""

    enabled: bool = False
    dehydrated: bool = False
    activation_delay: Duration = timedelta(minutes=45)
    first_content_delay: Duration = timedelta(hours=2)
    content_interval: Duration = timedelta(hours=1)


class GuestSpec(_Strict):
    """A guest that already exists in the tenant (e.g. set up by hand for another integration)."""

    email: str
    display_name: str = "Expel SOC"
    address_in: Literal["mail", "otherMails"] = "mail"
    accepted: bool = True
    global_reader: bool = True


class PartnerSpec(_Strict):
    """An existing cross-tenant access partner entry, with the properties as Graph shows them."""

    tenant_id: Guid = EXPEL_TENANT_ID
    inbound_trust: dict[str, bool | None] | None = None
    automatic_user_consent_settings: dict[str, bool | None] | None = None
    b2b_collaboration_inbound: dict | None = None


class ExistingSpec(_Strict):
    """What is already configured in the tenant at sandbox start."""

    guests: list[GuestSpec] = []
    partners: list[PartnerSpec] = []
    subscriptions: list[str] = []


class GuestBehaviourSpec(_Strict):
    """When an invited guest redeems its invitation (``None``: never)."""

    redeem_after: Duration | None = timedelta(minutes=10)


class DeviceSpec(_Strict):
    """How the tenant's Workbench security device behaves once registered."""

    health: Literal["follows_tenant", "stays_unhealthy"] = "follows_tenant"
    unhealthy_reason: str = "Expel could not authenticate to the Office 365 Management Activity API."
    health_check_delay: Duration = timedelta(minutes=5)
    health_check_interval: Duration = Field(
        default=timedelta(minutes=5), description="Between health checks after the first; status changes only at a check."
    )
    first_data_delay: Duration = timedelta(minutes=75)
    first_alert_delay: Duration | None = Field(
        default=timedelta(hours=48), description="After first data; null for a quiet tenant with no alerts."
    )


class TenantSpec(_Strict):
    """One customer tenant."""

    id: Guid
    display_name: str
    initial_domain: str
    workbench_organization: Guid | None = Field(
        default=None, description="The Workbench organization that is this customer (default: the first)."
    )
    consent: ConsentSpec = ConsentSpec()
    audit: AuditSpec = AuditSpec()
    guest: GuestBehaviourSpec = GuestBehaviourSpec()
    existing: ExistingSpec = ExistingSpec()
    device: DeviceSpec = DeviceSpec()


class ApiKeySpec(_Strict):
    """A Workbench service-account API key."""

    name: str
    organization: Guid
    role: Literal["organization_admin", "organization_analyst"] = "organization_admin"
    read_only: bool = False
    value: str | None = None
    generate: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ApiKeySpec:
        if (self.value is None) == (not self.generate):
            raise ValueError("give exactly one of 'value' or 'generate: true'")
        return self


class OrganizationSpec(_Strict):
    id: Guid
    name: str


class WorkbenchSpec(_Strict):
    """The provider's Workbench: its customer organizations and API keys."""

    organizations: list[OrganizationSpec] = [
        OrganizationSpec(id="0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d", name="Sandbox Customers")
    ]
    api_keys: list[ApiKeySpec] = [
        ApiKeySpec(name="onboarding", organization="0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d", generate=True)
    ]
    m365_plugin_slug: str = "o365"


class Scenario(_Strict):
    """A whole sandbox world."""

    description: str = ""
    time_scale: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    replication_lag: Duration = Field(default=timedelta(seconds=10), description="Graph write-to-read lag.")
    provider: ProviderSpec = ProviderSpec()
    workbench: WorkbenchSpec = WorkbenchSpec()
    tenants: list[TenantSpec] = []
    faults: list[FaultSpec] = []
    rate_limits: list[RateLimitSpec] = Field(
        default_factory=lambda: list(PUBLISHED_LIMITS),
        description="Throttling limits in real seconds; default: Microsoft's published figures (an empty list: none).")

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        ids = [t.id for t in self.tenants]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"tenant ids must be unique; repeated: {duplicates}")
        domains = [t.initial_domain.lower() for t in self.tenants]
        if len(set(domains)) != len(domains):
            raise ValueError("tenant initial_domain values must be unique")
        if self.provider.tenant_id in ids:
            raise ValueError("the provider's own tenant cannot also be a customer tenant")
        orgs = {o.id for o in self.workbench.organizations}
        for key in self.workbench.api_keys:
            if key.organization not in orgs:
                raise ValueError(f"api key {key.name!r} names unknown workbench organization {key.organization}")
        for tenant in self.tenants:
            if tenant.workbench_organization and tenant.workbench_organization not in orgs:
                raise ValueError(f"tenant {tenant.id} names unknown workbench organization {tenant.workbench_organization}")
        return self


class ScenarioError(ValueError):
    """The scenario file cannot be used; ``problems`` has one line per problem, each naming the file and the key."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def _problems(source: str, exc: ValidationError) -> list[str]:
    """``scenario FILE: tenants.0.audit.activation_delay: message`` per problem (messages are one line: newlines escaped)."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ").replace("\n", "\\n")
        lines.append(f"scenario {source}: {where}: {message}")
    return lines


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"scenario {path} is not valid YAML: {where}{getattr(exc, 'problem', None) or exc}".replace("\n", " ")


def load_scenario(path: Path | None) -> Scenario:
    """Read and validate a scenario file; ``None`` gives the built-in default scenario file."""
    if path is None:
        path = default_scenario_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"scenario {path} is not UTF-8 text (byte {exc.start + 1}): save it as UTF-8") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(_yaml_problem(path, exc)) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario {path} must be a mapping at the top level, not {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(*_problems(str(path), exc)) from exc


def default_scenario_path() -> Path:
    return Path(__file__).resolve().parents[1] / "scenarios" / "default.yaml"
