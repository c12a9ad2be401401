"""Prefect flows: one flow per file, reading like the provider's guide."""
