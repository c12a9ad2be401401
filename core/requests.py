"""What the onboarding team gives for one tenant: the flow's parameter, a CSV row, the CLI's flags.

Only names and ids, never credentials (those are in blocks, loaded by name), so nothing secret
reaches parameters, states or artifacts. Validating a request imports nothing but pydantic.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.results import Mode
from core.text import first_unsafe

MAX_NAME_LENGTH = 256  # Entra's limit for a displayName
MAX_EMAIL_LENGTH = 254  # RFC 5321: a 256-octet path less its angle brackets
MAX_LOCAL_PART_LENGTH = 64  # RFC 5321

# What Entra, the portal, PowerShell and .NET print for one id: hyphenated (any case), the same in
# braces or as an RFC 4122 URN, or 32 hex digits. uuid.UUID alone also takes hyphens anywhere, any
# number of braces and non-ASCII digits, which are copy errors rather than ids.
_HEX = "[0-9a-fA-F]"
_GUID = re.compile(rf"(?:urn:uuid:)?(?P<a>{_HEX}{{8}}(?:-{_HEX}{{4}}){{3}}-{_HEX}{{12}})|\{{(?P<b>{_HEX}{{8}}(?:-{_HEX}{{4}}){{3}}-{_HEX}{{12}})\}}"
                   rf"|(?P<c>{_HEX}{{32}})", re.IGNORECASE)
NIL_GUID = "00000000-0000-0000-0000-000000000000"

# One addr-spec of RFC 5322 without its obsolete and quoted forms: dot-separated atext before the @,
# letter-digit-hyphen labels with an alphabetic (or punycode) top-level domain after it. A comma, a
# space, a quote or a second @ would let one field name several recipients or a header.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@(?:{_LABEL}\.)+(?:[A-Za-z]{{2,63}}|xn--[A-Za-z0-9-]{{1,59}})", re.ASCII)

_CONTROL_NAMES = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab", "\x1b": "escape"}  # control characters have no Unicode name
_BLOCK_NAME = re.compile(r"[a-z0-9-]+")  # what Prefect accepts as a block document name


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` for a message (control characters escaped), cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 1]}…"


def normalise_guid(value: str) -> str:
    """The lower-case hyphenated form of a GUID given in any of the forms above; ValueError otherwise."""
    match = _GUID.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"expected a GUID, got {shown(value)}")
    guid = str(uuid.UUID(match["a"] or match["b"] or match["c"]))
    if guid == NIL_GUID:
        raise ValueError(f"expected a GUID, got the nil GUID {NIL_GUID}, which names no tenant or organization")
    return guid


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an organization name, or None."""
    where = first_unsafe(name)  # a name is printed in emails, tables and the Prefect UI: each of these misleads there
    if where is not None:
        char = name[where]
        what = _CONTROL_NAMES.get(char) or unicodedata.name(char, "a control character").lower()
        return (f"the organization name may hold letters of any script, digits, spaces and punctuation, "
                f"not U+{ord(char):04X} ({what}) at character {where + 1}")
    if len(name) > MAX_NAME_LENGTH:
        return f"the organization name may be at most {MAX_NAME_LENGTH} characters long (Entra's limit), not {len(name)}"
    return None


class TenantRequest(BaseModel):
    """Which tenant to onboard, as the onboarding team gives it."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str = Field(description="The customer's Directory (tenant) ID.")
    organization_name: str = Field(description="The organization name as Entra shows it (top-left of the account box).")
    provider_org_id: str = Field(description="The customer's organization GUID at the provider (Workbench).")

    @field_validator("tenant_id", "provider_org_id")
    @classmethod
    def _guid(cls, value: str) -> str:
        return normalise_guid(value)

    @field_validator("organization_name")
    @classmethod
    def _name(cls, value: str) -> str:
        name = value.strip()
        if not name:
            raise ValueError("the organization name must not be empty")
        problem = _name_problem(name)
        if problem:
            raise ValueError(problem)
        return name


class BlockNames(BaseModel):
    """Names of the saved credential blocks (``prefect block ls`` shows them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")  # a misspelt key in the UI form's JSON is refused, not ignored

    provider_app: str = Field(default="m365-provider-app", description="A saved ProviderAppCredentials block.")
    workbench: str = Field(default="expel-workbench", description="A saved WorkbenchCredentials block.")

    @field_validator("provider_app", "workbench")
    @classmethod
    def _block_name(cls, value: str) -> str:
        if not _BLOCK_NAME.fullmatch(value):
            raise ValueError(f"a block name has lowercase letters, digits and dashes only (as `prefect block ls` shows it), got {shown(value)}")
        return value


class StepModes(BaseModel):
    """Force a mode per customer-side step; empty means the preflight chooses.

    One field per step whose catalogue entry has ``mode_chosen`` (``tasks/catalogue.py`` refuses
    to load when the two disagree); the CLI's ``--<step>`` flags and the CSV's columns are these fields.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    console_access: Mode | None = Field(default=None, description="Force a mode for console access: apply, guide or plan.")
    cross_tenant_access: Mode | None = Field(default=None, description="Force a mode for cross-tenant access: apply, guide or plan.")
    unified_audit_log: Mode | None = Field(default=None, description="Force a mode for the audit log: apply, guide or plan.")

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value  # a form's or a CSV's empty choice

    def forced(self) -> dict[str, Mode]:
        """The steps given a mode, by step name."""
        return {name: mode for name, mode in self if mode is not None}


class OnboardingRequest(TenantRequest):
    """Everything the onboarding team gives for one customer (the Prefect UI shows it as a form)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_contact_email: str = Field(description="The customer's admin, who receives the consent link and reminders.")
    modes: StepModes = Field(default_factory=StepModes, description="Optional: force guide or plan mode per step.")
    blocks: BlockNames = Field(default_factory=BlockNames, description="Names of the saved credential blocks.")

    @field_validator("customer_contact_email")
    @classmethod
    def _email(cls, value: str) -> str:
        address = value.strip()
        local, _, _domain = address.rpartition("@")
        if not _EMAIL.fullmatch(address) or len(address) > MAX_EMAIL_LENGTH or len(local) > MAX_LOCAL_PART_LENGTH:
            raise ValueError(f"not an email address: {shown(value)} (expected one address such as admin@contoso.com, in ASCII "
                             f"(an international domain as xn--…), at most {MAX_EMAIL_LENGTH} characters)")
        return address

    @property
    def tenant(self) -> TenantRequest:
        """The tenant alone, as every step takes it."""
        return TenantRequest(tenant_id=self.tenant_id, organization_name=self.organization_name, provider_org_id=self.provider_org_id)
