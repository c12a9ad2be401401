"""The onboarding steps in the provider guide's order: the one list everything else reads.

Each entry is declared in its step's own module. Adding a step means one module under ``tasks/``
with its :class:`~core.catalogue.StepSpec`, its name in :class:`~core.catalogue.StepName`, and
one entry here (plus a field of :class:`~core.requests.StepModes` if the team may force its mode).
"""

from __future__ import annotations

from core.catalogue import Catalogue, CatalogueError, StepName
from core.requests import StepModes
from tasks import admin_consent, console_access, cross_tenant_access, security_device, tenant, unified_audit_log

CATALOGUE = Catalogue([
    tenant.SPEC,
    admin_consent.SPEC,
    console_access.SPEC,
    cross_tenant_access.SPEC,
    unified_audit_log.SPEC,
    security_device.SPEC,
])

# Found when the module loads, not days into a run.
if {line.name for line in CATALOGUE.lines()} != set(StepName):
    raise CatalogueError(f"every StepName must be a line of the catalogue: {sorted(set(StepName) - {line.name for line in CATALOGUE.lines()})} is not")
if {s.name.value for s in CATALOGUE.with_modes()} != set(StepModes.model_fields):
    raise CatalogueError(f"StepModes' fields {sorted(StepModes.model_fields)} must be the steps whose mode is chosen")
