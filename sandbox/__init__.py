"""A local, stateful emulation of the Microsoft 365 and Expel Workbench APIs this project calls.

Each emulated service is a package (``login``, ``graph``, ``exchange``, ``management_activity``,
``workbench``) shaped like a moto service: ``routes.py`` parses and serialises on the real paths,
``models.py`` holds per-tenant state and rules with no HTTP, ``errors.py`` has one class per real
error code. ``core`` holds what they share: the scenario clock, fault injection, the request log,
the CA, token signing and the scenario file. ``server`` runs one HTTPS port per service.
"""
