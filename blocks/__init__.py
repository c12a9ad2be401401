"""Prefect blocks for the provider's credentials and configuration."""
