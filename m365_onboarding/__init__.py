"""m365-onboarding: onboard a Microsoft 365 tenant to an MDR provider with Prefect."""
__version__ = "0.1.0"
