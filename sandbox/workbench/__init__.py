"""Emulated Expel Workbench JSON:API (``/api/v2/...``)."""
