"""Prefect automations of the onboarding, kept as code and applied idempotently."""
