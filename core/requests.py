"""What the onboarding team gives for one tenant: the flow's parameter, a CSV row, the CLI's flags.

Only names and ids, never credentials (those are in blocks, loaded by name), so nothing secret
reaches parameters, states or artifacts. Validating a request imports nothing but pydantic.
"""

from __future__ import annotations

import re
import uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.results import Mode

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


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


class StepModes(BaseModel):
    """Force a mode per customer-side step; empty means the preflight chooses.

    One field per step whose catalogue entry has ``mode_chosen`` (``tasks/catalogue.py`` refuses
    to load when the two disagree); the CLI's ``--<step>`` flags and the CSV's columns are these fields.
    """

    model_config = ConfigDict(frozen=True)

    console_access: Mode | None = Field(default=None, description="Force a mode for console access: apply, guide or plan.")
    cross_tenant_access: Mode | None = Field(default=None, description="Force a mode for cross-tenant access: apply, guide or plan.")
    unified_audit_log: Mode | None = Field(default=None, description="Force a mode for the audit log: apply, guide or plan.")

    def forced(self) -> dict[str, Mode]:
        """The steps given a mode, by step name."""
        return {name: mode for name, mode in self if mode is not None}


class OnboardingRequest(TenantRequest):
    """Everything the onboarding team gives for one customer (the Prefect UI shows it as a form)."""

    customer_contact_email: str = Field(description="The customer's admin, who receives the consent link and reminders.")
    modes: StepModes = Field(default_factory=StepModes, description="Optional: force guide or plan mode per step.")
    blocks: BlockNames = Field(default_factory=BlockNames, description="Names of the saved credential blocks.")

    @field_validator("customer_contact_email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value.strip()):
            raise ValueError(f"not an email address: {value!r}")
        return value.strip()

    @property
    def tenant(self) -> TenantRequest:
        """The tenant alone, as every step takes it."""
        return TenantRequest(tenant_id=self.tenant_id, organization_name=self.organization_name, provider_org_id=self.provider_org_id)
