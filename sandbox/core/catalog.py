"""Fixed facts of Microsoft's cloud the sandbox reproduces: resource apps, their app roles, directory roles.

Ids come from ../shared/reference/microsoft-apis.md §2 and §10 (Graph app-role ids are taken from
many independent codebases; Global Reader's template id is verified against Microsoft's docs).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ResourceApp:
    """A first-party resource (API) and the application permissions (app roles) it defines."""

    key: str
    app_id: str
    display_name: str
    audience: str
    app_roles: dict[str, str] = field(default_factory=dict)  # permission name -> app role id


GRAPH = ResourceApp(
    key="graph",
    app_id="00000003-0000-0000-c000-000000000000",
    display_name="Microsoft Graph",
    audience="https://graph.microsoft.com",
    app_roles={
        "User.Invite.All": "09850681-111b-4a89-9bed-3f2cae46d706",
        "User.Read.All": "df021288-bdef-4463-88db-98f22de89214",
        "User.ReadWrite.All": "741f803b-c850-494e-b5df-cde7c675a1ca",
        "RoleManagement.Read.Directory": "483bed4a-2ad3-4361-a73b-c83ccdbdc53c",
        "RoleManagement.ReadWrite.Directory": "9e3f62cf-ca93-4989-b6ce-bf83c28f9fe8",
        "Policy.Read.All": "246dd0d5-5bd0-4def-940b-0421030a5b68",
        "Policy.ReadWrite.CrossTenantAccess": "338163d7-f101-4c92-94ba-ca46fe52447c",
        "CrossTenantInformation.ReadBasic.All": "cac88765-0581-4025-9725-5ebc13f729ee",
        "Directory.Read.All": "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
        "Directory.ReadWrite.All": "19dbc75e-c2e2-444c-a770-ec69d8559fc7",
        "Organization.Read.All": "498476ce-e0fe-48b0-b801-37ba7e2685c6",
        "Application.Read.All": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
        "Application.ReadWrite.All": "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
    },
)
EXCHANGE = ResourceApp(
    key="exchange",
    app_id="00000002-0000-0ff1-ce00-000000000000",
    display_name="Office 365 Exchange Online",
    audience="https://outlook.office365.com",
    app_roles={"Exchange.ManageAsApp": "dc50a0fb-09a3-484d-be87-e023b12c6440"},
)
MANAGEMENT = ResourceApp(
    key="management_activity",
    app_id="c5393580-f805-4401-95e8-94b7a6ef2fc2",
    display_name="Office 365 Management APIs",
    audience="https://manage.office.com",
    app_roles={
        "ActivityFeed.Read": "594c1fb6-4f81-4475-ae41-0c394909246c",
        "ActivityFeed.ReadDlp": "4807a72c-ad38-4250-94c9-4eabfe26cd55",
    },
)
RESOURCES: tuple[ResourceApp, ...] = (GRAPH, EXCHANGE, MANAGEMENT)


def resource_by_audience(audience: str) -> ResourceApp | None:
    """The resource whose ``/.default`` scope or audience this is (trailing slash tolerated)."""
    wanted = audience.rstrip("/").lower()
    for resource in RESOURCES:
        if wanted in (resource.audience.lower(), resource.app_id):
            return resource
    return None


def resource_by_key(key: str) -> ResourceApp:
    for resource in RESOURCES:
        if resource.key == key:
            return resource
    raise KeyError(key)


def find_permission(name: str) -> tuple[ResourceApp, str] | None:
    """The resource defining permission ``name`` and its app role id."""
    for resource in RESOURCES:
        if name in resource.app_roles:
            return resource, resource.app_roles[name]
    return None


# Built-in directory roles: display name -> template id (a built-in role's definition id equals it).
DIRECTORY_ROLES: dict[str, str] = {
    "Global Reader": "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
    "Global Administrator": "62e90394-69f5-4237-9190-012177145e10",
    "Security Reader": "5d6b6bb7-de71-4623-b4af-96380a352509",
    "Security Administrator": "194ae4cb-b126-40b2-bd5b-6091b380977d",
    "Exchange Administrator": "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "Compliance Administrator": "17315797-102d-40b4-93e0-432062caca18",
    "Privileged Role Administrator": "e8611ab8-c189-46e8-94e1-60213ab1f814",
    "Guest Inviter": "95e79109-95c0-4d8e-aee3-d01accf2d47b",
    "Reports Reader": "4a5d8f65-41da-4de4-8968-e035b65339cf",
}
