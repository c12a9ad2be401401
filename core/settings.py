"""Settings: where the APIs are, the provider's values, and timing. Secrets are not here (see ``blocks/``).

Read from the environment with the prefix ``M365_ONBOARD_`` (nested fields with ``__``, e.g.
``M365_ONBOARD_PROVIDER__SOC_GUEST_DOMAIN``) and from a ``.env`` file. The defaults are the values
of Expel's Microsoft 365 setup guide, so another provider changes settings, not code.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.catalogue import WaitPolicyName

GLOBAL_READER_TEMPLATE_ID = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
EXPEL_TENANT_ID = "1cde81fd-b430-4035-b24d-709921922876"


class Cloud(StrEnum):
    """A Microsoft cloud (or the local sandbox)."""

    GLOBAL = "global"
    GCC = "gcc"
    GCC_HIGH = "gcc_high"
    DOD = "dod"
    CHINA = "china"
    SANDBOX = "sandbox"


class Endpoints(BaseModel):
    """Base URLs of the five APIs and the token audiences (scopes are ``<audience>/.default``)."""

    model_config = ConfigDict(frozen=True)

    login: str
    graph: str
    exchange: str
    management_activity: str
    workbench: str
    graph_audience: str
    exchange_audience: str
    management_audience: str


def _endpoints(login: str, graph: str, exchange: str, management: str, workbench: str = "https://workbench.expel.io") -> Endpoints:
    return Endpoints(
        login=login,
        graph=graph,
        exchange=exchange,
        management_activity=management,
        workbench=workbench,
        graph_audience=graph,
        exchange_audience=exchange,
        management_audience=management,
    )


# Hosts per cloud from reference §6. Unconfirmed there: the sovereign Exchange admin hosts, and the
# China Management Activity host (not in the current docs; manage.office.cn is our guess).
CLOUD_ENDPOINTS: dict[Cloud, Endpoints] = {
    Cloud.GLOBAL: _endpoints("https://login.microsoftonline.com", "https://graph.microsoft.com", "https://outlook.office365.com", "https://manage.office.com"),
    Cloud.GCC: _endpoints("https://login.microsoftonline.com", "https://graph.microsoft.com", "https://outlook.office365.com", "https://manage-gcc.office.com"),
    Cloud.GCC_HIGH: _endpoints("https://login.microsoftonline.us", "https://graph.microsoft.us", "https://outlook.office365.us", "https://manage.office365.us"),
    Cloud.DOD: _endpoints("https://login.microsoftonline.us", "https://dod-graph.microsoft.us", "https://webmail.apps.mil", "https://manage.protection.apps.mil"),
    Cloud.CHINA: _endpoints(
        "https://login.partner.microsoftonline.cn", "https://microsoftgraph.chinacloudapi.cn", "https://partner.outlook.cn", "https://manage.office.cn"
    ),
    # The sandbox keeps the global audiences: only scheme, host and port change.
    Cloud.SANDBOX: Endpoints(
        login="https://127.0.0.1:8443",
        graph="https://127.0.0.1:8444",
        exchange="https://127.0.0.1:8445",
        management_activity="https://127.0.0.1:8446",
        workbench="https://127.0.0.1:8447",
        graph_audience="https://graph.microsoft.com",
        exchange_audience="https://outlook.office365.com",
        management_audience="https://manage.office.com",
    ),
}


class _Section(BaseModel):
    """A group of settings: a misspelt variable (``M365_ONBOARD_WAITS__AUDIT_ACTIVATON__…``) or an
    infinite duration is refused, naming it, instead of being silently ignored or taken."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ProviderSettings(_Section):
    """The MDR provider's values from its setup guide."""

    tenant_id: str = Field(default=EXPEL_TENANT_ID, description="The provider's Entra tenant, added as cross-tenant partner.")
    display_name: str = Field(default="Expel", description="The provider's name as customers know it.")
    soc_guest_domain: str = Field(default="soc.expel.io", description="Domain of the SOC guest: <provider-org GUID>@<domain>.")
    soc_guest_display_name: str = Field(default="Expel SOC", description="Display name of the SOC guest.")
    guest_role_template_id: str = Field(default=GLOBAL_READER_TEMPLATE_ID, description="Directory role given to the SOC guest.")
    guest_role_name: str = Field(default="Global Reader", description="That role's name, for people.")
    invite_redirect_url: str = Field(default="https://myapps.microsoft.com", description="Where the guest lands after redeeming.")
    send_invitation_message: bool = Field(default=False, description="Whether Microsoft emails the invitation.")
    trust_mfa: bool = Field(default=True, description="Inbound trust of the provider's MFA.")
    trust_compliant_devices: bool = Field(default=True, description="Inbound trust of compliant devices.")
    trust_hybrid_joined_devices: bool = Field(default=True, description="Inbound trust of hybrid-joined devices.")
    automatic_redemption: bool = Field(default=True, description="Automatically redeem invitations from the provider.")
    app_display_name: str = Field(default="Expel Microsoft 365 Integration", description="The multi-tenant app as customers see it.")
    consent_redirect_uri: str | None = Field(default=None, description="Redirect URI registered on the app, if consent should return there.")
    workbench_plugin_name: str = Field(default="Microsoft 365", description="Display name of the Workbench plugin to register.")
    workbench_device_name: str = Field(
        default="Microsoft 365 - {organization_name}",
        description="Name of the Workbench security device; may use {organization_name} and {tenant_id}.",
    )
    management_content_types: tuple[str, ...] = Field(
        default=("Audit.AzureActiveDirectory", "Audit.Exchange", "Audit.SharePoint", "Audit.General", "DLP.All"),
        description="Management Activity API content types to subscribe to.",
    )

    @field_validator("workbench_device_name")
    @classmethod
    def _device_name_pattern(cls, value: str) -> str:
        try:
            value.format(organization_name="Contoso", tenant_id="00000000-0000-0000-0000-000000000000")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"workbench_device_name may use only {{organization_name}} and {{tenant_id}}, got {value!r}") from exc
        return value


class TimingSettings(_Section):
    """Timeouts and consistency waits of the HTTP layer (long waits belong to the flow)."""

    http_timeout_s: float = Field(default=30.0, gt=0, description="Connect and read timeout of every request.")
    http_retries: int = Field(default=4, ge=0, description="Retries of an idempotent request on 429/5xx/connection errors.")
    max_retry_after_s: float = Field(default=120.0, gt=0, description="Longest Retry-After honoured in-process.")
    consistency_deadline_s: float = Field(default=300.0, gt=0, description="How long to wait for a write to replicate.")
    consistency_interval_s: float = Field(default=2.0, gt=0, description="Pause between reads while waiting to replicate.")
    consistent_reads: int = Field(default=3, ge=1, description="Matching reads in a row that count as replicated.")
    step_retries: int = Field(default=5, ge=0, description="Retries of a step's check on a transient failure (after the HTTP layer's own).")
    step_retry_backoff_s: float = Field(default=10.0, gt=0, description="First delay between two of those retries; it doubles each time, with jitter.")


class WaitPolicy(_Section):
    """How long a wait is expected to take, when it counts as stalled, when to give up, how often to look."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    expected_s: float = Field(gt=0, description="Typical duration, from the guide or Microsoft's published figures.")
    stall_s: float = Field(gt=0, description="Past this the wait is stalled and people are told.")
    limit_s: float = Field(gt=0, description="Past this the wait fails the run.")
    interval_s: float = Field(gt=0, description="Pause between two checks.")
    remind_s: float | None = Field(default=None, gt=0, description="When the customer's contact is reminded, if the wait is on them.")

    @model_validator(mode="after")
    def _ordered(self) -> WaitPolicy:
        if not self.stall_s <= self.limit_s:
            raise ValueError(f"stall ({self.stall_s}s) must not be later than the limit ({self.limit_s}s)")
        return self


HOUR = 3600.0


class WaitSettings(_Section):
    """Every wait of the onboarding, from the guide: expected duration, stall threshold, limit, pace."""

    time_scale: float = Field(default=1.0, gt=0, description="Divide every duration by this (sandbox runs on compressed time).")
    suspend_from_s: float = Field(default=300.0, ge=0, description="Pauses at least this long release the worker (suspend); shorter ones poll in-process.")
    admin_consent: WaitPolicy = WaitPolicy(expected_s=24 * HOUR, stall_s=72 * HOUR, limit_s=14 * 24 * HOUR, interval_s=HOUR, remind_s=24 * HOUR)
    # A guide-mode step waiting for the customer's admin to make the change (console access, cross-tenant access, audit log).
    customer_change: WaitPolicy = WaitPolicy(expected_s=24 * HOUR, stall_s=72 * HOUR, limit_s=14 * 24 * HOUR, interval_s=HOUR, remind_s=24 * HOUR)
    audit_activation: WaitPolicy = WaitPolicy(expected_s=HOUR, stall_s=2 * HOUR, limit_s=24 * HOUR, interval_s=600)
    device_healthy: WaitPolicy = WaitPolicy(expected_s=600, stall_s=1800, limit_s=24 * HOUR, interval_s=300)
    first_data: WaitPolicy = WaitPolicy(expected_s=1.5 * HOUR, stall_s=12 * HOUR, limit_s=48 * HOUR, interval_s=1800)
    first_alerts: WaitPolicy = WaitPolicy(expected_s=72 * HOUR, stall_s=96 * HOUR, limit_s=7 * 24 * HOUR, interval_s=4 * HOUR)

    @model_validator(mode="before")
    @classmethod
    def _partial_policies(cls, data: Any) -> Any:
        """Setting one field of a wait (e.g. WAITS__AUDIT_ACTIVATION__LIMIT_S) keeps the others' defaults."""
        if isinstance(data, dict):
            for name, value in list(data.items()):
                field = cls.model_fields.get(name)
                if field is not None and isinstance(field.default, WaitPolicy) and isinstance(value, dict):
                    data[name] = field.default.model_dump() | value
        return data

    def base(self, name: WaitPolicyName) -> WaitPolicy:
        """The named policy as configured (scenario time)."""
        policy: WaitPolicy = getattr(self, name.value)  # every name is a field: checked below, at import
        return policy

    def policy(self, name: WaitPolicyName) -> WaitPolicy:
        """The named policy with every duration divided by the time scale."""
        base = self.base(name)
        k = self.time_scale
        return WaitPolicy(
            expected_s=base.expected_s / k, stall_s=base.stall_s / k, limit_s=base.limit_s / k, interval_s=base.interval_s / k,
            remind_s=base.remind_s / k if base.remind_s is not None else None,
        )


_POLICY_FIELDS = {name for name, info in WaitSettings.model_fields.items() if info.annotation is WaitPolicy}
if {p.value for p in WaitPolicyName} != _POLICY_FIELDS:
    raise TypeError(f"WaitPolicyName {sorted(p.value for p in WaitPolicyName)} must name exactly the WaitSettings policies {sorted(_POLICY_FIELDS)}")


class RecoverySettings(_Section):
    """How a run whose process died (worker killed, machine lost) is noticed and restarted."""

    onboarding_deployment: str = Field(default="onboard-tenant/onboard-tenant", description="Deployment of the onboarding flow.")
    heartbeat_s: int = Field(
        default=180, ge=30, description="Flow-run heartbeat interval of the workers (Prefect's PREFECT_FLOWS_HEARTBEAT_FREQUENCY, 180 by default)."
    )
    missed_heartbeats: int = Field(default=3, ge=2, description="A running run silent for this many heartbeats is marked Crashed.")
    max_recoveries: int = Field(default=3, ge=0, description="A crashed onboarding run is restarted at most this many times.")
    restart_again_after_s: int = Field(
        default=600, ge=10,
        description="A run still Crashed this long after it crashed is handed to the resumer once more "
                    "(Prefect does not retry an automation action the server refused).",
    )

    listen_before_restart_s: float | None = Field(
        default=None, ge=0,
        description="How long crash recovery listens for a Crashed run's heartbeats before it restarts it "
                    "(a run that still sends them was only unheard); default 1.5 heartbeats and 10 s.",
    )

    @property
    def silent_after_s(self) -> int:
        return self.heartbeat_s * self.missed_heartbeats

    @property
    def listen_s(self) -> float:
        return self.listen_before_restart_s if self.listen_before_restart_s is not None else 1.5 * self.heartbeat_s + 10


class NotificationSettings(_Section):
    """Who is told what: Prefect notification blocks, named by slug ``<block-type>/<name>``."""

    team_block: str | None = Field(
        default=None, description="The onboarding team's channel, e.g. slack-webhook/onboarding, ms-teams-webhook/soc, custom-webhook/pager."
    )
    customer_block: str | None = Field(
        default=None, description="Channel for messages to the customer's contact (consent link, guide instructions, reminders)."
    )
    email_from: str | None = Field(default=None, description="Sender of customer emails (email-server-credentials block); default: the block's username.")
    ui_url: str | None = Field(default=None, description="Prefect UI base URL for links in messages (default: PREFECT_UI_URL).")
    no_worker_after_s: float = Field(default=900, gt=0, description="A resumed run not Running after this long has no worker to run it.")
    message_retry_delays_s: list[float] = Field(
        default=[5.0, 30.0, 120.0], description="Delays between the tries of one customer message; after the last it is tried again at the next check.")

    @field_validator("team_block", "customer_block")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value is not None and (value.count("/") != 1 or not all(value.split("/"))):
            raise ValueError(f"a block is named '<block-type-slug>/<block-name>', e.g. slack-webhook/onboarding; got {value!r}")
        return value


class ResultSettings(_Section):
    """Where runs keep their task results: the cache a resumed run reads back, shared by every worker.

    A run resumed on another worker than the one that suspended it must find its results, or it
    starts from an empty cache (the consent email sent again, every wait's deadline reset). ``deploy``
    points both deployments at this storage and at Prefect's JSON serializer (results are never pickled).
    """

    storage_block: str | None = Field(
        default=None, pattern=r"^[a-z0-9-]+/[a-z0-9][a-z0-9-]*$",
        description="A saved file-system block every worker reaches, as block-type/name (e.g. s3-bucket/onboarding-results); "
                    "default: a local-file-system block at local_path, for workers on one host.",
    )
    local_path: Path | None = Field(default=None, description="Folder of the default local-file-system block (default: <project>/.state/results).")


class Rate(_Section):
    """At most ``requests`` calls in any ``per_s`` seconds: a limit as Microsoft publishes one."""

    requests: int = Field(gt=0, description="Calls allowed in the window.")
    per_s: float = Field(gt=0, description="The window, in seconds.")


class BudgetSettings(_Section):
    """The call budget: each limit a Prefect rate limit shared by every process that calls the service.

    The defaults are Microsoft's published limits (Graph throttling-limits page; Management Activity
    API reference). A limit left unset (None) is not budgeted: Microsoft publishes no figure for the
    Exchange admin API, Expel none for Workbench. A Prefect rate limit is a token bucket and
    Microsoft's windows slide: the budget spends at most ``share`` of a limit in any window, ``burst``
    of that at once and the rest at a steady rate (the remaining tenth covers clock skew and the
    provider's other tools using the same app).
    """

    enabled: bool = Field(default=True, description="Send every call through the budget (off: calls go out as fast as the steps make them).")
    share: float = Field(default=0.9, gt=0, le=1, description="Share of each limit the budget may spend in any window.")
    burst: float = Field(default=0.2, gt=0, lt=1, description="Share of that which may be spent at once; the rest comes at a steady rate.")
    wait_s: float = Field(default=600.0, gt=0, description="Longest a call waits for the budget before it counts as throttled.")
    graph_per_app: Rate | None = Field(default=Rate(requests=130_000, per_s=10),
                                       description="Graph, per provider app across every tenant.")
    graph_per_tenant: Rate | None = Field(default=Rate(requests=3_500, per_s=10),
                                          description="Graph identity calls per app and tenant (the smallest tenant's resource units, one per call).")
    graph_writes_per_tenant: Rate | None = Field(default=Rate(requests=3_000, per_s=150),
                                                 description="Graph identity writes per app and tenant.")
    invitations_per_tenant: Rate | None = Field(default=Rate(requests=150, per_s=5), description="Graph /invitations per tenant, all apps.")
    management_activity_per_tenant: Rate | None = Field(default=Rate(requests=2_000, per_s=60),
                                                        description="Office 365 Management Activity API per tenant.")
    exchange_per_tenant: Rate | None = Field(default=None, description="Exchange admin API per tenant (no published figure).")
    workbench_per_key: Rate | None = Field(default=None, description="Workbench per API key, across every tenant (no published figure).")


class OnboardingSettings(BaseSettings):
    """Everything configurable that is not a secret."""

    model_config = SettingsConfigDict(env_prefix="M365_ONBOARD_", env_nested_delimiter="__", env_file=".env", extra="ignore")

    cloud: Cloud = Field(default=Cloud.GLOBAL, description="Which Microsoft cloud the customer tenants live in.")
    login_base_url: str | None = Field(default=None, description="Override of the login base URL.")
    graph_base_url: str | None = None
    exchange_base_url: str | None = None
    management_activity_base_url: str | None = None
    workbench_base_url: str | None = None
    ca_bundle: Path | None = Field(default=None, description="CA bundle to verify TLS with (the sandbox's CA); default: system store.")
    provider: ProviderSettings = ProviderSettings()
    timing: TimingSettings = TimingSettings()
    waits: WaitSettings = WaitSettings()
    resumer_deployment: str = Field(default="resume-onboarding/resume-onboarding", description="Deployment that resumes a suspended run.")
    recovery: RecoverySettings = RecoverySettings()
    notifications: NotificationSettings = NotificationSettings()
    results: ResultSettings = ResultSettings()
    budget: BudgetSettings = BudgetSettings()

    @model_validator(mode="after")
    def _sandbox_needs_its_ca(self) -> OnboardingSettings:
        if self.cloud == Cloud.SANDBOX and self.ca_bundle is None:
            raise ValueError("cloud 'sandbox' needs M365_ONBOARD_CA_BUNDLE (printed by `m365-onboard sandbox`)")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ValueError(f"M365_ONBOARD_CA_BUNDLE {self.ca_bundle} does not exist")
        return self

    def endpoints(self) -> Endpoints:
        """The cloud's endpoints with any per-service override applied."""
        base = CLOUD_ENDPOINTS[self.cloud]
        overrides = {
            name: value.rstrip("/")
            for name, value in {
                "login": self.login_base_url,
                "graph": self.graph_base_url,
                "exchange": self.exchange_base_url,
                "management_activity": self.management_activity_base_url,
                "workbench": self.workbench_base_url,
            }.items()
            if value
        }
        return base.model_copy(update=overrides)


def declared_settings() -> OnboardingSettings:
    """The settings as tasks are declared with them, at import (Prefect fixes a task's retries then).

    Settings that do not validate are the defaults here; the flow reads them again when it starts
    and fails there, naming the setting, instead of failing an import with a traceback.
    """
    try:
        return OnboardingSettings()
    except ValueError:
        return OnboardingSettings.model_construct(timing=TimingSettings(), notifications=NotificationSettings())
