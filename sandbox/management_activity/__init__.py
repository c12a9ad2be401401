"""Emulated Office 365 Management Activity API (``/api/v1.0/{tenant}/activity/feed/...``)."""
