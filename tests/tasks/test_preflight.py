"""Choosing apply, guide or blocked per step from the permissions a tenant granted."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.catalogue import StepName
from core.results import Mode
from tasks.context import TenantContext
from tasks.errors import ModeNotPossible
from tasks.preflight import choose_modes, preflight
from tests.conftest import FRESH, NEVER_CONSENTS, OTHER_ORG, PARTIAL


def test_a_fully_consented_tenant_runs_every_step_in_apply_mode(make_context: Callable[..., TenantContext]) -> None:
    modes = preflight(make_context(FRESH))
    assert {name: choice.mode for name, choice in modes.items()} == {
        "console_access": Mode.APPLY,
        "cross_tenant_access": Mode.APPLY,
        "unified_audit_log": Mode.APPLY,
    }


def test_a_withheld_write_permission_falls_back_to_guide_and_says_why(make_context: Callable[..., TenantContext]) -> None:
    modes = preflight(make_context(PARTIAL))
    assert modes[StepName.CONSOLE_ACCESS].mode == Mode.GUIDE
    assert modes[StepName.CONSOLE_ACCESS].missing_for_apply == ["User.Invite.All"]
    assert "User.Invite.All" in modes[StepName.CONSOLE_ACCESS].reason
    assert modes[StepName.CROSS_TENANT_ACCESS].mode == Mode.APPLY
    assert modes[StepName.UNIFIED_AUDIT_LOG].mode == "blocked"
    assert modes[StepName.UNIFIED_AUDIT_LOG].missing_for_read == ["ActivityFeed.Read"]


def test_an_unconsented_tenant_is_blocked_everywhere(make_context: Callable[..., TenantContext]) -> None:
    assert {c.mode for c in preflight(make_context(NEVER_CONSENTS)).values()} == {"blocked"}


def test_an_app_with_only_a_read_role_in_exchange_is_guided_for_the_audit_log(make_context: Callable[..., TenantContext]) -> None:
    modes = preflight(make_context(OTHER_ORG))
    assert modes[StepName.UNIFIED_AUDIT_LOG].mode == Mode.GUIDE
    assert modes[StepName.UNIFIED_AUDIT_LOG].missing_for_apply == ["role:Exchange Administrator"]
    assert modes[StepName.CONSOLE_ACCESS].mode == Mode.APPLY


def test_read_write_permissions_count_as_their_read_counterparts() -> None:
    granted = {"User.Read.All", "RoleManagement.ReadWrite.Directory", "Policy.ReadWrite.CrossTenantAccess"}
    modes = choose_modes(granted)
    assert modes[StepName.CROSS_TENANT_ACCESS].mode == Mode.APPLY
    assert modes[StepName.CONSOLE_ACCESS].mode == Mode.GUIDE  # reads roles through ReadWrite, cannot invite


def test_the_team_can_force_guide_or_plan_but_not_an_impossible_apply() -> None:
    everything = {"User.Read.All", "User.Invite.All", "RoleManagement.ReadWrite.Directory", "Policy.ReadWrite.CrossTenantAccess", "role:Global Administrator"}
    forced = choose_modes(everything, {"console_access": Mode.GUIDE, "cross_tenant_access": Mode.PLAN})
    assert forced[StepName.CONSOLE_ACCESS].mode == Mode.GUIDE and forced[StepName.CROSS_TENANT_ACCESS].mode == Mode.PLAN
    with pytest.raises(ModeNotPossible, match=r"unified_audit_log cannot run in apply mode: the app lacks Exchange.ManageAsApp"):
        choose_modes(everything, {"unified_audit_log": Mode.APPLY})
