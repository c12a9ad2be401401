"""Thin HTTP clients for Entra login, Graph, Exchange admin, Management Activity and Workbench."""
