"""Everything a step needs about one tenant: ids, settings, and the API clients built for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from clients.auth import TokenProvider
from clients.graph import GraphClient
from clients.workbench import WorkbenchClient, WorkbenchNotConfigured
from m365_onboarding.settings import OnboardingSettings


@dataclass
class TenantContext:
    """One customer tenant being onboarded, with lazily built clients that share one token provider."""

    tenant_id: str
    organization_name: str
    provider_org_id: str
    settings: OnboardingSettings
    tokens: TokenProvider
    workbench_authorization: Any = None  # a callable giving the Workbench Authorization header
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def endpoints(self):  # noqa: ANN201 - Endpoints, imported lazily by callers
        return self.settings.endpoints()

    def _client_options(self) -> dict[str, Any]:
        timing = self.settings.timing
        return {
            "ca_bundle": self.settings.ca_bundle,
            "timeout_s": timing.http_timeout_s,
            "retries": timing.http_retries,
            "max_retry_after_s": timing.max_retry_after_s,
        }

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments every API client of this tenant takes (TLS, timeouts, retries, tenant)."""
        return {**self._client_options(), "tenant_id": self.tenant_id}

    @cached_property
    def graph(self) -> GraphClient:
        endpoints = self.endpoints
        return GraphClient(
            endpoints.graph,
            authorization=self.tokens.bearer(self.tenant_id, endpoints.graph_audience),
            tenant_id=self.tenant_id,
            **self._client_options(),
        )

    @cached_property
    def workbench(self) -> WorkbenchClient:
        """The Workbench client for the provider's API key (the same key for every tenant)."""
        if self.workbench_authorization is None:
            raise WorkbenchNotConfigured(f"tenant {self.tenant_id}: no Workbench API key was given, so Workbench cannot be read or changed.")
        return WorkbenchClient(self.endpoints.workbench, authorization=self.workbench_authorization, **self._client_options())

    @property
    def soc_guest_email(self) -> str:
        """``<customer's provider-org GUID>@<SOC guest domain>``, as the guide asks."""
        return f"{self.provider_org_id}@{self.settings.provider.soc_guest_domain}".lower()
