"""Benchmarks that print figures as JSON (not timed tests)."""
