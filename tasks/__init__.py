"""Onboarding steps: one module per step of the provider's guide (observe, plan, apply, verify)."""
