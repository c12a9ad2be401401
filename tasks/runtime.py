"""Turning a flow's inputs into a :class:`TenantContext`: settings from the environment, secrets from blocks.

Flows and tasks pass only names and ids (a :class:`TenantRequest` and block names), never
credentials, so nothing secret reaches parameters, states or artifacts.
"""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator

from blocks.credentials import ProviderAppCredentials, WorkbenchCredentials
from clients.auth import TokenProvider
from m365_onboarding.settings import OnboardingSettings
from tasks.context import TenantContext


class TenantRequest(BaseModel):
    """Which tenant to onboard, as the onboarding team gives it."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str = Field(description="The customer's Directory (tenant) ID.")
    organization_name: str = Field(description="The organization name as Entra shows it (top-left of the account box).")
    provider_org_id: str = Field(description="The customer's organization GUID at the provider (Workbench).")

    @field_validator("tenant_id", "provider_org_id")
    @classmethod
    def _guid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value.strip()))
        except ValueError as exc:
            raise ValueError(f"expected a GUID, got {value!r}") from exc

    @field_validator("organization_name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the organization name must not be empty")
        return value.strip()


class BlockNames(BaseModel):
    """Names of the saved credential blocks (``prefect block ls`` shows them)."""

    model_config = ConfigDict(frozen=True)

    provider_app: str = Field(default="m365-provider-app", description="A saved ProviderAppCredentials block.")
    workbench: str = Field(default="expel-workbench", description="A saved WorkbenchCredentials block.")


def build_context(request: TenantRequest, blocks: BlockNames, settings: OnboardingSettings | None = None) -> TenantContext:
    """Load the credential blocks by name and build the tenant's context."""
    settings = settings or OnboardingSettings()
    app = ProviderAppCredentials.load(blocks.provider_app)
    workbench = WorkbenchCredentials.load(blocks.workbench)
    tokens = TokenProvider(
        settings.endpoints().login,
        app.client_id,
        app.msal_credential,
        ca_bundle=settings.ca_bundle,
        timeout_s=settings.timing.http_timeout_s,
    )
    return TenantContext(
        tenant_id=request.tenant_id,
        organization_name=request.organization_name,
        provider_org_id=request.provider_org_id,
        settings=settings,
        tokens=tokens,
        workbench_authorization=workbench.authorization_header,
    )
