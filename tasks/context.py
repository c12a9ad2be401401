"""Everything a step needs about one tenant: its ids, the settings, and the API clients built for it.

All the clients are built in one place (:meth:`TenantContext.create`), against the cloud's
endpoints, sharing one token provider; building them makes no call. The tenant check's result is
kept here once it is complete, so that the checks of one process ask for it once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from clients.auth import TokenProvider
from clients.exchange import ExchangeAdminClient
from clients.graph import GraphClient
from clients.http import CallBudget, ClientOptions
from clients.login import LoginClient
from clients.management_activity import ManagementActivityClient
from clients.workbench import WorkbenchClient
from core.settings import Endpoints, OnboardingSettings
from tasks.errors import WorkbenchNotConfigured


class TenantCheck(BaseModel):
    """What is known of the tenant: always its id; its name once the app can read it."""

    tenant_id: str
    display_name: str | None = Field(default=None, description="Entra's organization name, once readable.")
    initial_domain: str | None = None
    name_verified: bool = Field(default=False, description="The typed name matched the tenant's display name.")


@dataclass
class TenantContext:
    """One customer tenant being onboarded, with its clients; see :meth:`create`."""

    tenant_id: str
    organization_name: str
    provider_org_id: str
    settings: OnboardingSettings
    endpoints: Endpoints
    tokens: TokenProvider
    login: LoginClient
    graph: GraphClient
    exchange: ExchangeAdminClient
    management: ManagementActivityClient
    required_permissions: tuple[str, ...]  # what admin consent must have granted: every step's read permissions
    workbench_client: WorkbenchClient | None = None  # None: no Workbench API key was given
    tenant: TenantCheck | None = None  # the latest tenant check; kept once it verified the name
    check_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Called before every write to the tenant or the provider's side (tasks/fencing.py: a process
    # that is no longer its run's current execution stops there).
    before_write: Callable[[], None] = field(default=lambda: None, repr=False)

    @classmethod
    def create(
        cls,
        tenant_id: str,
        organization_name: str,
        provider_org_id: str,
        settings: OnboardingSettings,
        tokens: TokenProvider,
        required_permissions: tuple[str, ...],
        workbench_authorization: Callable[[], str] | None = None,
        workbench_organization_id: str | None = None,
        budgets: Mapping[str, CallBudget] | None = None,
    ) -> TenantContext:
        """The context with every client of the tenant, each against the cloud's endpoint for its API.

        ``budgets`` holds each service's call budget (``tasks/budget.py``), by the client's ``service``
        name; a service without one is not budgeted.
        """
        budgets = budgets or {}
        endpoints = settings.endpoints()
        timing = settings.timing
        options = ClientOptions(ca_bundle=settings.ca_bundle, timeout_s=timing.http_timeout_s, retries=timing.http_retries,
                                max_retry_after_s=timing.max_retry_after_s)
        return cls(
            tenant_id=tenant_id,
            organization_name=organization_name,
            provider_org_id=provider_org_id,
            settings=settings,
            endpoints=endpoints,
            tokens=tokens,
            login=LoginClient(endpoints.login, **options),
            graph=GraphClient(endpoints.graph, authorization=tokens.bearer(tenant_id, endpoints.graph_audience), tenant_id=tenant_id,
                              budget=budgets.get("graph"), **options),
            exchange=ExchangeAdminClient(endpoints.exchange, authorization=tokens.bearer(tenant_id, endpoints.exchange_audience),
                                         tenant_id=tenant_id, budget=budgets.get("exchange"), **options),
            management=ManagementActivityClient(endpoints.management_activity,
                                                authorization=tokens.bearer(tenant_id, endpoints.management_audience),
                                                publisher_id=settings.provider.tenant_id, tenant_id=tenant_id,
                                                budget=budgets.get("management_activity"), **options),
            required_permissions=required_permissions,
            # The provider's key, the same for every tenant: it decides which organizations it sees.
            workbench_client=WorkbenchClient(endpoints.workbench, authorization=workbench_authorization,
                                             organization_id=workbench_organization_id, budget=budgets.get("workbench"), **options)
            if workbench_authorization is not None else None,
        )

    @property
    def workbench(self) -> WorkbenchClient:
        if self.workbench_client is None:
            raise WorkbenchNotConfigured(f"tenant {self.tenant_id}: no Workbench API key was given, so Workbench cannot be read or changed.")
        return self.workbench_client

    @property
    def soc_guest_email(self) -> str:
        """``<customer's provider-org GUID>@<SOC guest domain>``, as the guide asks."""
        return f"{self.provider_org_id}@{self.settings.provider.soc_guest_domain}".lower()

    @property
    def initial_domain(self) -> str | None:
        """The tenant's ``*.onmicrosoft.com`` domain, once the tenant check could read it."""
        return self.tenant.initial_domain if self.tenant else None
