"""A tenant's context from a flow's inputs: settings from the environment, secrets from blocks.

Flows and tasks pass only names and ids (a :class:`~core.requests.TenantRequest` and block
names), never credentials, so nothing secret reaches parameters, states or artifacts.
:func:`context_for` builds the context once per process and request: every check a process makes
for a tenant loads the blocks, builds the clients and keeps its tokens once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from blocks.credentials import ProviderAppCredentials, WorkbenchCredentials
from clients.auth import TokenProvider
from clients.http import CallBudget
from core.dispatch import sync_result
from core.requests import BlockNames, TenantRequest
from core.settings import OnboardingSettings
from tasks.budget import service_budgets
from tasks.catalogue import CATALOGUE
from tasks.context import TenantContext
from tasks.fencing import assert_current_execution

KEPT = 16  # contexts kept per process: a process serves one run, tests a few
_contexts: OrderedDict[tuple[TenantRequest, BlockNames, str], TenantContext] = OrderedDict()
_lock = threading.Lock()


def tenant_context(
    tenant_id: str,
    organization_name: str,
    provider_org_id: str,
    settings: OnboardingSettings,
    client_id: str,
    credential: Callable[[], str | dict[str, Any]],
    workbench_authorization: Callable[[], str] | None,
    workbench_organization_id: str | None = None,
    budgets: Mapping[str, CallBudget] | None = None,
) -> TenantContext:
    """The context of one tenant for the provider's app ``client_id`` (``credential`` gives its secret or certificate)."""
    tokens = TokenProvider(settings.endpoints().login, client_id, credential, ca_bundle=settings.ca_bundle, timeout_s=settings.timing.http_timeout_s)
    return TenantContext.create(tenant_id, organization_name, provider_org_id, settings, tokens,
                                required_permissions=tuple(CATALOGUE.read_permissions()), workbench_authorization=workbench_authorization,
                                workbench_organization_id=workbench_organization_id, budgets=budgets)


def build_context(request: TenantRequest, blocks: BlockNames, settings: OnboardingSettings | None = None) -> TenantContext:
    """Load the credential blocks by name and build the tenant's context."""
    settings = settings or OnboardingSettings()
    app = sync_result(ProviderAppCredentials.load(blocks.provider_app))
    workbench = sync_result(WorkbenchCredentials.load(blocks.workbench))
    # A mistyped provider organization the key can also see would register the tenant under
    # another customer: refused before any call, the SOC guest's invitation included.
    workbench.check_organization(request.provider_org_id)
    # Every call of every process goes through the same Prefect rate limits (tasks/budget.py).
    budgets = service_budgets(settings.budget, client_id=app.client_id, tenant_id=request.tenant_id, workbench_key=blocks.workbench)
    context = tenant_context(request.tenant_id, request.organization_name, request.provider_org_id, settings,
                             app.client_id, app.msal_credential, workbench.authorization_header, workbench.organization_id, budgets)
    context.before_write = assert_current_execution  # a superseded execution of the run writes nothing
    return context


def context_for(request: TenantRequest, blocks: BlockNames) -> TenantContext:
    """This process's context for the tenant: built on first use, then reused by every check."""
    settings = OnboardingSettings()
    key = (request, blocks, settings.model_dump_json())  # a changed setting (tests) is another context
    with _lock:  # parallel steps of a run ask at the same moment: one builds, the others wait for it
        if key in _contexts:
            _contexts.move_to_end(key)
            return _contexts[key]
        context = _contexts[key] = build_context(request, blocks, settings)
        while len(_contexts) > KEPT:
            _contexts.popitem(last=False)
        return context
