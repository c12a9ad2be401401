"""Emulated Exchange Online admin API (``/adminapi/beta/{tenant}/InvokeCommand``) for the audit-log cmdlets."""
