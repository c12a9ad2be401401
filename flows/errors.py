"""Errors of the onboarding flow itself: a wait past its limit, a tenant already being onboarded, a step it cannot run."""

from __future__ import annotations

from core.errors import OnboardingError


class WaitLimitReached(OnboardingError):
    """A wait passed its limit without seeing what it waited for."""

    next_action = "Look at the tenant's checklist artifact for the last observation, fix the cause, and start a new onboarding run."


class AlreadyOnboarding(OnboardingError):
    """Another onboarding run for the same tenant is still active."""

    next_action = "Follow the active run in the Prefect UI, or cancel it before starting a new one."


class StepBlocked(OnboardingError):
    """The provider's app cannot even read what a step needs, so neither apply nor guide mode can run."""

    next_action = "Have the customer's admin grant the missing permissions (re-open the admin-consent link), then start a new run."
