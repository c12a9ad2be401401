"""Bad input is refused before anything starts, with one line naming the field and what is allowed, exit 2.

Through every door the team uses: the CLI's flags, a CSV file, the flow parameter as the Prefect UI
form sends it, the settings from the environment and the sandbox's scenario file. Valid but unusual
input (a byte-order mark, a GUID in braces and upper case, non-ASCII names) is accepted and
normalised. And text from outside (an organization named ``Evil [/] \\x1b]0;pwned\\x07 Corp``) is
shown literally, never as markup or as a terminal escape sequence.

No Prefect server is needed: the CLI runs in-process (and twice as a real process), with every
entry point that would start something replaced by a recorder that must stay unused.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import ValidationError
from rich.console import Console
from typer.testing import CliRunner, Result

from core.requests import OnboardingRequest
from m365_onboarding.cli import app
from m365_onboarding.demo import progress_table
from m365_onboarding.onboard import StartedRun, describe
from m365_onboarding.status import TenantStatus, status_table
from tests.prefect_harness import PROJECT

TENANT = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
ORG = "0b9e1a2c-5d6f-4a7b-8c9d-0e1f2a3b4c5d"
HEADER = "tenant_id,organization_name,provider_org_id,customer_contact_email"
EVIL = "Evil [/] \x1b]0;pwned\x07 Corp"  # rich markup, and the OSC sequence that sets a terminal's title
EVIL_SHOWN = "Evil [/] \\x1b]0;pwned\\x07 Corp"


def tenant_flags(**change: str) -> list[str]:
    """The four flags of a valid tenant, with ``change`` (by flag, without its dashes) replacing some."""
    values = {"tenant-id": TENANT, "organization": "Contoso", "provider-org": ORG, "contact": "admin@contoso.example", **change}
    return [part for flag, value in values.items() for part in (f"--{flag}", value)]


@dataclass
class Started:
    """What would have started something; a refused input must leave it empty."""

    calls: list[str] = field(default_factory=list)
    requests: list[OnboardingRequest] = field(default_factory=list)


@pytest.fixture(autouse=True)
def started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Started]:
    """Every entry point that starts runs, servers or deployments records its call instead; no .env, no setting from outside.

    ``start_runs`` records the requests it was given and starts nothing, so that accepted input can be
    checked as the flow would receive it. The Prefect API is a port nothing listens on.
    """
    record = Started()

    def recorder(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            record.calls.append(name)
            raise AssertionError(f"{name} was called")
        return call

    def start_runs(requests: list[OnboardingRequest], deployment: str, ui_url: str | None) -> tuple[list[Any], list[Any]]:
        record.calls.append("start_runs")
        record.requests.extend(requests)
        return [], []

    monkeypatch.chdir(tmp_path)  # no .env of the project's or the developer's
    for name in [n for n in os.environ if n.upper().startswith("M365_ONBOARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr("m365_onboarding.onboard.start_runs", start_runs)
    monkeypatch.setattr("m365_onboarding.deploy.deploy", recorder("deploy"))
    monkeypatch.setattr("automations.apply.apply_automations", recorder("apply_automations"))
    monkeypatch.setattr("m365_onboarding.demo.run_demo", recorder("run_demo"))
    monkeypatch.setattr("m365_onboarding.status.tenant_statuses", recorder("tenant_statuses"))
    monkeypatch.setattr("tasks.dry_run.plan_tenant", recorder("plan_tenant"))
    monkeypatch.setattr("sandbox.server.SandboxServer.serve", recorder("SandboxServer.serve"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
        yield record


def cli(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, args, env=env)


def assert_refused(result: Result, started: Started, expected: str) -> None:
    """Exit 2, one error line that contains ``expected``, no traceback, no escape byte, nothing started."""
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "\x1b" not in result.output, result.output
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert all(line in errors or line == "nothing started: 1 problem(s)" for line in lines), result.stderr  # no box, no usage
    assert started.calls == [], started.calls


# --- the CLI's flags --------------------------------------------------------------------------------------------

FLAG_CASES = {
    "tenant-id-not-a-guid": (["onboard", *tenant_flags(**{"tenant-id": "contoso"})], "--tenant-id: expected a GUID, got 'contoso'"),
    "tenant-id-hyphens-misplaced": (["onboard", *tenant_flags(**{"tenant-id": "6f1c-2a3b4d5e4f608a7b9c0d1e2f3a4b"})], "--tenant-id: expected a GUID"),
    "tenant-id-one-brace": (["onboard", *tenant_flags(**{"tenant-id": "{" + TENANT})], "--tenant-id: expected a GUID"),
    "tenant-id-escape-sequence": (["onboard", *tenant_flags(**{"tenant-id": "\x1b[31mred"})], "--tenant-id: expected a GUID, got '\\x1b[31mred'"),
    "provider-org-nil-guid": (["onboard", *tenant_flags(**{"provider-org": "00000000-0000-0000-0000-000000000000"})],
                              "--provider-org: expected a GUID, got the nil"),
    "organization-newline": (["onboard", *tenant_flags(organization="Contoso\nBcc: x")], "--organization: the organization name may hold letters"),
    "organization-bidi-override": (["onboard", *tenant_flags(organization="Contoso\u202eexe.")], "not U+202E (right-to-left override)"),
    "organization-bidi-isolate": (["onboard", *tenant_flags(organization="Contoso\u2066x")], "not U+2066"),
    "organization-zero-width": (["onboard", *tenant_flags(organization="Cont\u200boso")], "not U+200B (zero width space) at character 5"),
    "organization-escape": (["onboard", *tenant_flags(organization=EVIL)], "--organization: the organization name may hold letters"),
    "organization-too-long": (["onboard", *tenant_flags(organization="a" * 257)], "--organization: the organization name may be at most 256 characters"),
    "organization-blank": (["onboard", *tenant_flags(organization="   ")], "--organization: the organization name must not be empty"),
    "contact-two-recipients": (["onboard", *tenant_flags(contact="a@b.co,root")], "--contact: not an email address: 'a@b.co,root' (expected one address"),
    "contact-space": (["onboard", *tenant_flags(contact="admin @contoso.example")], "--contact: not an email address"),
    "contact-two-at": (["onboard", *tenant_flags(contact="a@b@contoso.example")], "--contact: not an email address"),
    "contact-quoted": (["onboard", *tenant_flags(contact='"admin"@contoso.example')], "--contact: not an email address"),
    "contact-header-injection": (["onboard", *tenant_flags(contact="a@contoso.example\nBcc: x@evil.example")], "--contact: not an email address"),
    "contact-no-tld": (["onboard", *tenant_flags(contact="admin@localhost")], "--contact: not an email address"),
    "contact-too-long": (["onboard", *tenant_flags(contact="a" * 64 + "@" + "b" * 60 + "." + "c" * 60 + "." + "d" * 60 + ".example")], "--contact"),
    "mode-unknown": (["onboard", *tenant_flags(), "--console-access", "sometimes"], "--console-access: Input should be 'apply', 'guide' or 'plan'"),
    "block-name-spaces": (["onboard", *tenant_flags(), "--workbench-block", "Expel Workbench"], "--workbench-block: a block name has lowercase letters"),
    "block-name-empty": (["onboard", *tenant_flags(), "--provider-app-block", ""], "--provider-app-block: a block name"),
    "deployment-without-flow": (["onboard", *tenant_flags(), "--deployment", "onboard-tenant"], "--deployment: expected <flow name>/<deployment name>"),
    "missing-flag": (["onboard", *tenant_flags()[:-2]], "missing --contact"),
    "unknown-flag": (["onboard", *tenant_flags(), "--tenant", TENANT], "No such option: --tenant"),
    "csv-and-a-mode-flag": (["onboard", "--csv", "tenants.csv", "--console-access", "guide"], "--console-access: not with --csv"),
    "csv-file-missing-with-markup-in-its-name": (["onboard", "--csv", "[/]tenants.csv"], "[/]tenants.csv: No such file or directory"),
    "plan-tenant-id": (["plan", "--tenant-id", "x", "--organization", "Contoso", "--provider-org", ORG], "--tenant-id: expected a GUID, got 'x'"),
    "plan-block-name": (["plan", "--tenant-id", TENANT, "--organization", "Contoso", "--provider-org", ORG, "--workbench-block", "Wb"],
                        "--workbench-block: a block name"),
    "plan-missing-option": (["plan", "--tenant-id", TENANT], "Missing option '--organization'"),
    "deploy-block-name": (["deploy", "--provider-app-block", "My App"], "--provider-app-block: a block name"),
    "sandbox-port-not-a-number": (["sandbox", "--port", "abc"], "Invalid value for '--port'"),
    "sandbox-time-scale-nan": (["sandbox", "--time-scale", "nan"], "--time-scale must be a finite number, got nan"),
    "demo-timeout-infinite": (["demo", "--timeout", "inf"], "--timeout must be a finite number, got inf; nothing was started"),
    "demo-time-scale-negative": (["demo", "--time-scale", "-5"], "--time-scale must be positive, got -5"),
}


@pytest.mark.parametrize(("args", "expected"), FLAG_CASES.values(), ids=FLAG_CASES.keys())
def test_a_bad_flag_is_one_line_naming_it_and_starts_nothing(args: list[str], expected: str, started: Started, tmp_path: Path) -> None:
    (tmp_path / "tenants.csv").write_text(f"{HEADER}\n{TENANT},Contoso,{ORG},admin@contoso.example\n")
    assert_refused(cli(args), started, expected)


def test_every_bad_flag_is_named_at_once() -> None:
    result = cli(["onboard", *tenant_flags(**{"tenant-id": "x"}, contact="a@b.co,root"), "--console-access", "sometimes", "--deployment", "x"])
    assert result.exit_code == 2
    assert [line.split(":")[1] for line in result.stderr.splitlines()[:-1]] == [" --tenant-id", " --contact", " --console-access", " --deployment"]
    assert result.stderr.splitlines()[-1] == "nothing started: 4 problem(s)"


# --- the CSV file ----------------------------------------------------------------------------------------------

def _rows(*rows: str, header: str = HEADER) -> bytes:
    return "\n".join([header, *rows, ""]).encode()


G2 = "c0c0c0c0-0000-4000-8000-000000000002"
CSV_CASES = {
    "extra-cell": (_rows(f"{TENANT},Contoso, Inc.,{ORG},admin@contoso.example"), "tenants.csv line 2: cell 5: the header has no column 5"),
    "value-under-an-unnamed-column": (_rows(f"{TENANT},Contoso,{ORG},admin@contoso.example,x", header=HEADER + ","), "line 2: cell 5"),
    "utf16-without-bom": (_rows(f"{TENANT},Contoso,{ORG},admin@contoso.example").decode().encode("utf-16-le"), "has NUL characters"),
    "latin-1": (_rows(f"{TENANT},Müller GmbH,{ORG},admin@contoso.example").decode().encode("latin-1"), "not UTF-8 text (byte"),
    "utf16-odd-length": (b"\xff\xfe" + "tenant_id".encode("utf-16-le") + b"\x00", "not UTF-16 text"),
    "quoted-newline-in-a-name": (_rows(f'{TENANT},"Two\nLines",{ORG},admin@contoso.example', f"{G2},Fine,{ORG},admin@fine.example"),
                                 "tenants.csv line 2: organization_name: the organization name may hold letters of any script, digits, spaces "
                                 "and punctuation, not U+000A (a line break) at character 4"),
    "duplicate-header": (_rows(f"{TENANT},A,{ORG},admin@contoso.example,B", header=HEADER + ",organization_name"),
                         "column organization_name is in the header 2 times (columns 2, 5)"),
    "unclosed-quote": (_rows(f'{TENANT},"Contoso,{ORG},admin@contoso.example'), "tenants.csv line 2: unexpected end of data"),
    "text-after-a-closing-quote": (_rows(f'{TENANT},"Contoso"Inc,{ORG},admin@contoso.example'), "tenants.csv line 2: ',' expected after '\"'"),
    "missing-column": (_rows(f"{TENANT},Contoso,{ORG}", header="tenant_id,organization_name,provider_org_id"), "missing column(s): customer_contact_email"),
    "misspelt-column": (_rows(f"{TENANT},Contoso,{ORG},admin@contoso.example,x", header=HEADER + ",console_acess"), "unknown column(s): console_acess"),
    "empty-file": (b"", "missing column(s): tenant_id"),
    "header-only": (_rows(), "no rows"),
    "guid-in-one-brace": (_rows(f"{{{TENANT},Contoso,{ORG},admin@contoso.example"), "tenants.csv line 2: tenant_id: expected a GUID"),
    "email-with-a-comma-quoted": (_rows(f'{TENANT},Contoso,{ORG},"a@b.co,root"'), "tenants.csv line 2: customer_contact_email: not an email address"),
    "same-tenant-twice-in-two-spellings": (_rows(f"{TENANT},Contoso,{ORG},admin@contoso.example",
                                                 f"{{{TENANT.upper()}}},Contoso,{ORG},admin@contoso.example"),
                                           f"tenants.csv line 3: tenant_id {TENANT} is already on line 2"),
    "bad-mode": (_rows(f"{TENANT},Contoso,{ORG},admin@contoso.example,Guide", header=HEADER + ",console_access"),
                 "tenants.csv line 2: console_access: Input should be 'apply', 'guide' or 'plan'"),
}


@pytest.mark.parametrize(("content", "expected"), CSV_CASES.values(), ids=CSV_CASES.keys())
def test_a_bad_csv_is_one_line_naming_the_file_line_and_field_and_starts_nothing(content: bytes, expected: str, started: Started, tmp_path: Path) -> None:
    (tmp_path / "tenants.csv").write_bytes(content)
    assert_refused(cli(["onboard", "--csv", "tenants.csv"]), started, expected)


def test_every_bad_row_is_listed_and_nothing_starts(started: Started, tmp_path: Path) -> None:
    (tmp_path / "tenants.csv").write_bytes(_rows(f"{TENANT},Good,{ORG},admin@good.example", f"x,Bad,{ORG},admin@bad.example",
                                                 f'{G2},"Multi\nLine",{ORG},nobody', f"{TENANT},Again,{ORG},admin@again.example"))
    result = cli(["onboard", "--csv", "tenants.csv"])
    assert result.exit_code == 2 and started.calls == []
    assert result.stderr.splitlines() == [
        "error: tenants.csv line 3: tenant_id: expected a GUID, got 'x'",
        "error: tenants.csv line 4: organization_name: the organization name may hold letters of any script, digits, spaces and punctuation, "
        "not U+000A (a line break) at character 6",
        "error: tenants.csv line 4: customer_contact_email: not an email address: 'nobody' (expected one address such as admin@contoso.com, "
        "in ASCII (an international domain as xn--…), at most 254 characters)",
        f"error: tenants.csv line 6: tenant_id {TENANT} is already on line 2",  # the quoted line break made row 3 two lines long
        "nothing started: 4 problem(s)",
    ]


# --- the flow parameter, as the Prefect UI form sends it ---------------------------------------------------------

def form(**change: Any) -> dict[str, Any]:
    """The JSON of the flow's ``request`` parameter as the UI form sends it, with ``change``."""
    sent = {"tenant_id": TENANT, "organization_name": "Contoso", "provider_org_id": ORG, "customer_contact_email": "admin@contoso.example",
            "modes": {"console_access": None, "cross_tenant_access": None, "unified_audit_log": None},
            "blocks": {"provider_app": "m365-provider-app", "workbench": "expel-workbench"}}
    return json.loads(json.dumps(sent | change))


FORM_CASES = {
    "misspelt-mode": (form(modes={"console_acess": "guide"}), "console_acess: unknown field"),
    "unknown-field": (form(customer_contact="admin@contoso.example"), "customer_contact: unknown field"),
    "tenant-id-a-number": (form(tenant_id=123), "tenant_id: Input should be a valid string"),
    "organization-null": (form(organization_name=None), "organization_name: Input should be a valid string"),
    "organization-line-separator": (form(organization_name="Contoso\u2028Ltd"), "organization_name: the organization name may hold letters"),
    "organization-bell": (form(organization_name="Contoso\x07"), "not U+0007 (a control character) at character 8"),
    "email-with-a-tab": (form(customer_contact_email="admin\t@contoso.example"), "customer_contact_email: not an email address: 'admin\\t@"),
    "block-name-upper-case": (form(blocks={"workbench": "Expel-Workbench"}), "workbench_block: a block name has lowercase letters"),
    "mode-upper-case": (form(modes={"unified_audit_log": "PLAN"}), "unified_audit_log: Input should be 'apply', 'guide' or 'plan'"),
    "provider-org-urn-of-another-kind": (form(provider_org_id=f"urn:oid:{ORG}"), "provider_org_id: expected a GUID"),
}


@pytest.mark.parametrize(("sent", "expected"), FORM_CASES.values(), ids=FORM_CASES.keys())
def test_a_bad_flow_parameter_is_one_problem_naming_its_field(sent: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as refused:
        OnboardingRequest.model_validate(sent)
    problems = describe(refused.value)
    assert len(problems) == 1 and expected in problems[0], problems
    assert "\n" not in problems[0] and "\x1b" not in problems[0]


# --- the settings, from the environment ---------------------------------------------------------------------

SETTING_CASES = {
    "time-scale-negative": (["onboard", *tenant_flags()], {"M365_ONBOARD_WAITS__TIME_SCALE": "-1"},
                            "settings: M365_ONBOARD_WAITS__TIME_SCALE: Input should be greater than 0"),
    "wait-limit-not-a-number": (["onboard", *tenant_flags()], {"M365_ONBOARD_WAITS__AUDIT_ACTIVATION__LIMIT_S": "a day"},
                                "settings: M365_ONBOARD_WAITS__AUDIT_ACTIVATION__LIMIT_S: Input should be a valid number"),
    "stall-after-limit": (["onboard", *tenant_flags()], {"M365_ONBOARD_WAITS__AUDIT_ACTIVATION__STALL_S": "999999999"},
                          "settings: M365_ONBOARD_WAITS__AUDIT_ACTIVATION: stall (999999999.0s) must not be later than the limit"),
    "cloud-unknown": (["status"], {"M365_ONBOARD_CLOUD": "azure"},
                      "settings: M365_ONBOARD_CLOUD: Input should be 'global', 'gcc', 'gcc_high', 'dod', 'china' or 'sandbox'"),
    "list-not-json": (["status", "--json"], {"M365_ONBOARD_PROVIDER__MANAGEMENT_CONTENT_TYPES": "Audit.Exchange"},
                      "settings: M365_ONBOARD_PROVIDER__MANAGEMENT_CONTENT_TYPES: not valid JSON"),
    "team-block-not-a-slug": (["automations", "--dry-run"], {"M365_ONBOARD_NOTIFICATIONS__TEAM_BLOCK": "slack"},
                              "settings: M365_ONBOARD_NOTIFICATIONS__TEAM_BLOCK: a block is named '<block-type-slug>/<block-name>'"),
    "heartbeat-not-an-integer": (["deploy"], {"M365_ONBOARD_RECOVERY__HEARTBEAT_S": "1.5"},
                                 "settings: M365_ONBOARD_RECOVERY__HEARTBEAT_S: Input should be a valid integer"),
    "ca-bundle-missing": (["onboard", *tenant_flags()], {"M365_ONBOARD_CA_BUNDLE": "nope.pem"}, "settings: M365_ONBOARD_CA_BUNDLE nope.pem does not exist"),
}


@pytest.mark.parametrize(("args", "env", "expected"), SETTING_CASES.values(), ids=SETTING_CASES.keys())
def test_a_bad_setting_is_one_line_naming_its_variable_and_starts_nothing(args: list[str], env: dict[str, str], expected: str, started: Started) -> None:
    assert_refused(cli(args, env), started, expected)


@pytest.mark.parametrize("env", [{"M365_ONBOARD_WAITS__AUDIT_ACTIVATON__LIMIT_S": "5"}, {"M365_ONBOARD_TIMING__HTTP_TIMEOUT_S": "inf"}],
                         ids=["misspelt-wait", "infinite-timeout"])
def test_a_misspelt_or_infinite_setting_is_refused(env: dict[str, str], started: Started) -> None:
    assert_refused(cli(["status"], env), started, next(iter(env)).rsplit("__", 1)[0])


# --- the sandbox's scenario file --------------------------------------------------------------------------------

SCENARIO_CASES = {
    "misspelt-key": ("replication_lagg: 5s", "scenario.yaml: replication_lagg: Extra inputs are not permitted"),
    "bad-duration": ("replication_lag: soon", "scenario.yaml: replication_lag: not a duration: 'soon' (use a number of seconds or e.g."),
    "infinite-duration": ("replication_lag: .inf", "scenario.yaml: replication_lag: a duration is a finite number of seconds"),
    "too-long-a-duration": ("replication_lag: 99999999999d", "scenario.yaml: replication_lag: too long a duration"),
    "infinite-fault-duration": ("faults: [{service: graph, kind: outage, lasts: .inf}]", "scenario.yaml: faults.0.lasts: a duration is a finite number"),
    "infinite-time-scale": ("time_scale: .inf", "scenario.yaml: time_scale: Input should be a finite number"),
    "bad-tenant-id": ("tenants: [{id: contoso, display_name: C, initial_domain: c.onmicrosoft.com}]", "scenario.yaml: tenants.0.id:"),
    "late-consent-without-after": ("tenants: [{id: 11111111-1111-4111-8111-111111111111, display_name: C, initial_domain: c.onmicrosoft.com, "
                                   "consent: {given: late}}]", "scenario.yaml: tenants.0.consent: consent given 'late' needs 'after'"),
    "yaml-syntax": ("tenants: [", "is not valid YAML: line 1, column 11: expected the node content"),
    "not-utf8": ("display: M\xfcller", "is not UTF-8 text (byte"),
}


@pytest.mark.parametrize(("content", "expected"), SCENARIO_CASES.values(), ids=SCENARIO_CASES.keys())
def test_a_bad_scenario_is_one_line_naming_the_key_and_starts_no_sandbox(content: str, expected: str, started: Started, tmp_path: Path) -> None:
    (tmp_path / "scenario.yaml").write_bytes(content.encode("latin-1" if "\xfc" in content else "utf-8"))
    result = cli(["sandbox", "--scenario", "scenario.yaml", "--state-dir", str(tmp_path / "state")])
    assert_refused(result, started, expected)
    assert not (tmp_path / "state").exists()


# --- valid but unusual input: accepted and normalised ------------------------------------------------------------

def test_unusual_flags_are_accepted_and_normalised(started: Started) -> None:
    result = cli(["onboard", *tenant_flags(**{"tenant-id": f" {{{TENANT.upper()}}} ", "provider-org": f"urn:uuid:{ORG.upper()}"},
                                           organization="  Müller GmbH  ", contact=" o'brien@xn--mller-kva.example ")])
    assert result.exit_code == 0, result.output
    [request] = started.requests
    assert (request.tenant_id, request.provider_org_id) == (TENANT, ORG)
    assert (request.organization_name, request.customer_contact_email) == ("Müller GmbH", "o'brien@xn--mller-kva.example")


ACCEPTED_CSV = {
    "utf8-bom-crlf-braces-upper-case": ("\ufeff" + HEADER + "\r\n" + f"{{{TENANT.upper()}}},株式会社 テスト,{ORG.upper()},admin@contoso.example\r\n",
                                        "utf-8", "株式会社 テスト"),
    "excel-unicode-text": ((HEADER + f"\n{TENANT}\tMüller GmbH\t{ORG}\tadmin@contoso.example\n").replace(",", "\t"), "utf-16", "Müller GmbH"),
    "semicolons-and-a-comma-in-a-name": ((HEADER + f"\n{TENANT};Contoso, Inc.;{ORG};admin@contoso.example\n").replace(",", ";", 3), "utf-8", "Contoso, Inc."),
    "quoted-comma-and-quote": (HEADER + f'\n{TENANT},"Contoso, ""the"" Inc.",{ORG},admin@contoso.example\n', "utf-8", 'Contoso, "the" Inc.'),
    "trailing-separators-and-blank-lines": ("\n" + HEADER + ",\n" + f"{TENANT.replace('-', '')}, Contoso ,{ORG},admin@contoso.example,\n\n,,,,\n",
                                            "utf-8", "Contoso"),
}


@pytest.mark.parametrize(("text", "encoding", "organization"), ACCEPTED_CSV.values(), ids=ACCEPTED_CSV.keys())
def test_an_unusual_csv_is_accepted_and_normalised(text: str, encoding: str, organization: str, started: Started, tmp_path: Path) -> None:
    (tmp_path / "tenants.csv").write_bytes(text.encode(encoding))
    result = cli(["onboard", "--csv", "tenants.csv"])
    assert result.exit_code == 0, result.output
    [request] = started.requests
    assert (request.tenant_id, request.organization_name, request.provider_org_id) == (TENANT, organization, ORG)


def test_the_form_s_unusual_but_valid_values_are_normalised() -> None:
    sent = form(tenant_id=TENANT.replace("-", "").upper(), organization_name="\tÅland Öy ", customer_contact_email=" Admin@Contoso.Example ",
                modes={"console_access": "", "unified_audit_log": "guide"})
    request = OnboardingRequest.model_validate(sent)
    assert (request.tenant_id, request.organization_name, request.customer_contact_email) == (TENANT, "Åland Öy", "Admin@Contoso.Example")
    assert request.modes.forced() == {"unified_audit_log": "guide"}  # the form's empty choice is no choice
    assert OnboardingRequest.model_validate(request.model_dump(mode="json")) == request  # what a resumed run reads back


# --- text from outside is shown literally ----------------------------------------------------------------------

def _status(organization: str, **change: Any) -> TenantStatus:
    values: dict[str, Any] = {"tenant_id": TENANT, "organization": organization, "run_name": f"onboard-{organization}", "run_id": uuid4(),
                              "run_state": "Running", "current_step": "admin_consent", "step_state": "waiting",
                              "waiting_for": "[bold]the admin[/bold]\x1b[2J", "since": datetime.now(UTC) - timedelta(hours=3), "stalled": True}
    return TenantStatus(**values | change)


def _render(renderable: Any, color: bool) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=400, force_terminal=color, color_system="truecolor" if color else None, soft_wrap=True)
    console.print(renderable)
    return buffer.getvalue()


@pytest.mark.parametrize("color", [False, True], ids=["plain", "colour-terminal"])
def test_status_shows_an_evil_name_literally_and_sends_no_escape_sequence(color: bool) -> None:
    rendered = _render(status_table([_status(EVIL), _status("Fine Corp", stalled=False)]), color)
    sgr = re.compile(r"\x1b\[[0-9;]*m")  # the colours rich itself writes, and nothing else
    text = sgr.sub("", rendered)
    assert "\x1b" not in text and "\x07" not in text, repr(rendered)
    assert EVIL_SHOWN in text and f"onboard-{EVIL_SHOWN}" in text and "[bold]the admin[/bold]\\x1b[2J" in text
    assert "Fine Corp" in text and "3h 0m ago" in text


def test_the_status_command_prints_an_evil_name_literally_as_a_table_and_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [_status(EVIL)]
    monkeypatch.setattr("m365_onboarding.status.tenant_statuses", lambda client, ui_url: rows)
    monkeypatch.setattr("prefect.client.orchestration.get_client", lambda sync_client: contextlib.nullcontext())
    monkeypatch.setattr("m365_onboarding.cli.out", Console(soft_wrap=True, width=400))  # the name on one line of the table
    table = cli(["status"])
    assert table.exit_code == 0 and EVIL_SHOWN in table.stdout and "\x1b" not in table.stdout, table.output
    as_json = cli(["status", "--json"])
    assert as_json.exit_code == 0 and "\x1b" not in as_json.stdout, as_json.output
    assert json.loads(as_json.stdout)[0]["organization"] == EVIL  # the data, exactly; escaped only as JSON escapes it


def test_the_demo_table_shows_an_evil_name_literally() -> None:
    run = StartedRun(organization=EVIL, tenant_id=TENANT, run_id=uuid4(), run_name=f"onboard-{EVIL}")
    state = _status(EVIL, run_id=run.run_id, run_state="\x1b]0;x\x07Running", steps={"admin_consent": "[/]"})
    rendered = _render(progress_table([run], {run.run_id: state}, 5), color=False)
    assert "\x1b" not in rendered and "\x07" not in rendered and "[/]" in rendered
    assert "Evil [/]" in rendered  # the column header: the name is too wide for the table, so its tail may wrap


# --- the real process: one line on stderr, exit 2, no traceback -------------------------------------------------

@pytest.mark.parametrize(("args", "expected"), [
    (["onboard", *tenant_flags(contact="a@b.co,root")], "error: --contact: not an email address: 'a@b.co,root'"),
    (["sandbox", "--port", "abc"], "error: Invalid value for '--port'"),
], ids=["bad-contact", "bad-port"])
def test_the_installed_command_refuses_bad_input_in_one_line(args: list[str], expected: str, tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.upper().startswith("M365_ONBOARD_")}
    done = subprocess.run([sys.executable, "-m", "m365_onboarding.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=env | {"PYTHONPATH": str(PROJECT), "PREFECT_API_URL": "http://127.0.0.1:9/api", "COLUMNS": "80"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(expected) and "Traceback" not in done.stderr + done.stdout, done.stderr
    assert len([line for line in done.stderr.splitlines() if line.startswith("error: ")]) == 1, done.stderr
