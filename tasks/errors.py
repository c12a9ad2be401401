"""Errors of the steps themselves: what a step found that a person must act on.

The errors of the APIs (and what a client made of them) are in ``clients/errors.py``; those of
the flow (a wait past its limit, a tenant already being onboarded) in ``flows/errors.py``.
"""

from __future__ import annotations

from typing import Any

from core.errors import OnboardingError


class TenantNameMismatch(OnboardingError):
    """The organization name typed by the team differs from the tenant's display name."""

    next_action = "Confirm with the customer which tenant is meant; correct the organization name or the tenant id."


class ConsentIncomplete(OnboardingError):
    """Consent was given, but some required permissions were not granted."""

    next_action = "Ask the customer's admin to grant the missing permissions (re-open the admin-consent link and accept)."

    def __init__(self, message: str, missing: list[str], **kwargs: Any) -> None:
        self.missing = list(missing)
        super().__init__(message, **kwargs)


class ModeNotPossible(OnboardingError):
    """The team asked for ``apply`` but the app lacks the permissions for it."""

    next_action = "Choose guide mode for the step, or have the customer's admin grant the missing permissions."


class StepNotConverged(OnboardingError):
    """A step applied its changes but reads never showed the desired state within the deadline."""

    next_action = "Re-run the step later; if it persists, compare the fields below in the admin center."

    def __init__(self, message: str, fields: list[str], **kwargs: Any) -> None:
        self.fields = list(fields)
        super().__init__(message, **kwargs)


class WorkbenchNotConfigured(OnboardingError):
    """No Workbench API key was given to the run."""

    next_action = "Save a WorkbenchCredentials block with the service account's API key and pass its name to the flow."


class OrganizationNotVisible(OnboardingError):
    """The Workbench API key cannot see the customer's organization."""

    next_action = "Check the customer's Workbench organization GUID, or use an API key of that organization."


class PluginSpecUnsupported(OnboardingError):
    """The plugin's ``device_spec`` schema requires keys this step cannot fill."""

    next_action = "Register the device by hand in Workbench (the step's instructions), and report the plugin's new fields to the team."


class UnusableChannel(OnboardingError, ValueError):
    """The customer channel's block cannot be used as configured; retrying will not help."""

    next_action = "Fix the customer channel (M365_ONBOARD_NOTIFICATIONS__CUSTOMER_BLOCK and its block), then restart the run."
