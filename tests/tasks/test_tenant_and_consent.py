"""Tenant validation and the admin-consent step against the sandbox."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from clients.errors import AppNotConsented, TenantNotFound
from core.results import Action, Mode, Outcome
from tasks.admin_consent import AdminConsentStep, require_consent
from tasks.context import TenantContext
from tasks.errors import ConsentIncomplete, TenantNameMismatch
from tasks.step import run_step
from tasks.tenant import check_tenant
from tests.conftest import FRESH, LATE_CONSENT, NEVER_CONSENTS, PARTIAL
from tests.sandbox_harness import SandboxHandle
from tests.support import present


def test_tenant_check_confirms_id_and_name(make_context: Callable[..., TenantContext]) -> None:
    check = check_tenant(make_context(FRESH, organization_name="  fresh   CORP "))
    assert check.tenant_id == FRESH and check.display_name == "Fresh Corp" and check.name_verified
    assert check.initial_domain == "freshcorp.onmicrosoft.com"


def test_tenant_check_refuses_a_name_mismatch_before_any_change(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    with pytest.raises(TenantNameMismatch, match="named 'Fresh Corp' in Entra, not 'Contoso'"):
        check_tenant(make_context(FRESH, organization_name="Contoso"))
    assert [r for r in step_sandbox.request_log(service="graph") if r["method"] != "GET"] == []


@pytest.mark.parametrize("tenant", ["12345678-1234-4234-8234-123456789012", "not-a-guid"])
def test_tenant_check_refuses_an_unknown_or_malformed_tenant(make_context: Callable[..., TenantContext], tenant: str) -> None:
    with pytest.raises(TenantNotFound) as caught:
        check_tenant(make_context(tenant, organization_name="X"))
    assert "Directory (tenant) ID" in str(caught.value)


def test_tenant_check_before_consent_confirms_existence_only(make_context: Callable[..., TenantContext]) -> None:
    check = check_tenant(make_context(NEVER_CONSENTS, organization_name="Never Consents LLC"))
    assert check.tenant_id == NEVER_CONSENTS and check.display_name is None and not check.name_verified


def test_consent_not_given_produces_the_consent_link(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    result = run_step(AdminConsentStep(), make_context(NEVER_CONSENTS, organization_name="Never Consents LLC"), Mode.APPLY)
    assert result.outcome == Outcome.ACTION_REQUIRED and result.plan.action == Action.MANUAL
    url = next(line.strip() for line in present(result.instructions).splitlines() if line.strip().startswith("https://"))
    assert url.startswith(f"{step_sandbox.base_url('login')}/{NEVER_CONSENTS}/adminconsent?")
    assert parse_qs(urlsplit(url).query)["client_id"] == [step_sandbox.client_id]
    page = step_sandbox.session().get(url)  # the link really opens the consent page
    assert page.status_code == 200 and "Permissions requested" in page.text


def test_consent_complete_is_converged(make_context: Callable[..., TenantContext]) -> None:
    result = run_step(AdminConsentStep(), make_context(FRESH), Mode.APPLY)
    assert result.outcome == Outcome.CONVERGED and result.observed["missing"] == []


def test_partial_consent_names_every_missing_read_permission_and_asks_no_write_permission(make_context: Callable[..., TenantContext]) -> None:
    # The tenant withheld User.Invite.All (a write: console access then runs in guide mode) and ActivityFeed.Read (a read).
    result = run_step(AdminConsentStep(), make_context(PARTIAL), Mode.APPLY)
    assert result.outcome == Outcome.ACTION_REQUIRED
    assert result.observed["missing"] == ["ActivityFeed.Read"]
    assert "ActivityFeed.Read" in present(result.instructions) and "User.Invite.All" not in present(result.instructions)


def test_consent_detected_once_given_even_with_a_cached_token(step_sandbox: SandboxHandle, make_context: Callable[..., TenantContext]) -> None:
    ctx = make_context(LATE_CONSENT)
    assert run_step(AdminConsentStep(), ctx, Mode.APPLY).outcome == Outcome.ACTION_REQUIRED
    step_sandbox.advance("2h")
    step_sandbox.advance("31s")
    assert run_step(AdminConsentStep(), ctx, Mode.APPLY).outcome == Outcome.CONVERGED


def test_require_consent_names_what_a_person_must_do(make_context: Callable[..., TenantContext]) -> None:
    with pytest.raises(ConsentIncomplete) as incomplete:
        require_consent(run_step(AdminConsentStep(), make_context(PARTIAL), Mode.APPLY))
    assert incomplete.value.missing == ["ActivityFeed.Read"]
    assert "not granted: ActivityFeed.Read." in str(incomplete.value) and "re-open the admin-consent link" in str(incomplete.value)
    with pytest.raises(AppNotConsented, match="has not consented") as missing:
        require_consent(run_step(AdminConsentStep(), make_context(NEVER_CONSENTS), Mode.APPLY))
    assert "/adminconsent?client_id=" in str(missing.value)
    require_consent(run_step(AdminConsentStep(), make_context(FRESH), Mode.APPLY))  # complete: no error
