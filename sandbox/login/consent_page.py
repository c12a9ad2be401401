"""The admin-consent page: what the customer's admin sees before Accept or Cancel."""

from __future__ import annotations

import html

from sandbox.core.catalog import find_permission
from sandbox.login.models import AppRegistration

_DESCRIPTIONS = {
    "User.Read.All": "Read all users' full profiles",
    "User.Invite.All": "Invite guest users to the organization",
    "RoleManagement.ReadWrite.Directory": "Read and write all directory RBAC settings",
    "RoleManagement.Read.Directory": "Read all directory RBAC settings",
    "Policy.Read.All": "Read your organization's policies",
    "Policy.ReadWrite.CrossTenantAccess": "Read and write your organization's cross tenant access policies",
    "Organization.Read.All": "Read organization information",
    "Directory.Read.All": "Read directory data",
    "Application.Read.All": "Read all applications",
    "Exchange.ManageAsApp": "Manage Exchange As Application",
    "ActivityFeed.Read": "Read activity data for your organization",
    "ActivityFeed.ReadDlp": "Read DLP policy events including detected sensitive data",
}


def render_consent_page(
    app: AppRegistration, publisher: str, tenant_name: str, form_action: str, hidden: dict[str, str]
) -> str:
    """An HTML page listing every requested permission by resource, with Accept and Cancel."""
    by_resource: dict[str, list[str]] = {}
    for name in app.permissions:
        found = find_permission(name)
        if found:
            by_resource.setdefault(found[0].display_name, []).append(name)
    sections = "".join(
        f"<h3>{html.escape(resource)}</h3><ul>"
        + "".join(
            f"<li class='permission' data-permission='{html.escape(p)}'><strong>{html.escape(_DESCRIPTIONS.get(p, p))}</strong>"
            f" <code>{html.escape(p)}</code> (application permission)</li>"
            for p in names
        )
        + "</ul>"
        for resource, names in by_resource.items()
    )
    fields = "".join(
        f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v)}'>" for k, v in hidden.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Permissions requested</title></head><body>"
        "<h1>Permissions requested</h1>"
        f"<h2 id='app'>{html.escape(app.display_name)}</h2><p>Publisher: {html.escape(publisher)} (unverified in this sandbox)</p>"
        f"<p>Accept for your organization: <strong id='tenant'>{html.escape(tenant_name)}</strong></p>"
        f"<p>This app would like to:</p>{sections}"
        "<p>Accepting these permissions means that you allow this app to use your data as specified in their terms of "
        "service and privacy statement. This is the local sandbox: no real tenant is changed.</p>"
        f"<form method='post' action='{html.escape(form_action)}'>{fields}"
        "<button type='submit' name='decision' value='accept'>Accept</button> "
        "<button type='submit' name='decision' value='cancel'>Cancel</button></form></body></html>"
    )
