"""Which application permissions each emulated Graph operation accepts, least privileged first.

From the permission tables of the Graph v1.0 docs (reference §1–§5, §10). ``GET /organization``
also accepts Organization.Read.All, which newer docs list; the reference's stored revision names
only Directory.Read.All, so this is marked unconfirmed there.
"""

from __future__ import annotations

_DIRECTORY_READ = ("Directory.Read.All", "Directory.ReadWrite.All")
_ROLE_READ = ("RoleManagement.Read.Directory", "RoleManagement.Read.All", "RoleManagement.ReadWrite.Directory", *_DIRECTORY_READ)

ACCEPTED: dict[str, tuple[str, ...]] = {
    "list_organization": ("Organization.Read.All", "Organization.ReadWrite.All", *_DIRECTORY_READ),
    "list_users": ("User.Read.All", "User.ReadWrite.All", *_DIRECTORY_READ),
    "get_user": ("User.Read.All", "User.ReadWrite.All", *_DIRECTORY_READ),
    "create_invitation": ("User.Invite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"),
    "list_role_definitions": _ROLE_READ,
    "get_role_definition": _ROLE_READ,
    "list_role_assignments": _ROLE_READ,
    "get_role_assignment": _ROLE_READ,
    "create_role_assignment": ("RoleManagement.ReadWrite.Directory",),
    "delete_role_assignment": ("RoleManagement.ReadWrite.Directory",),
    "list_partners": ("Policy.Read.All", "Policy.ReadWrite.CrossTenantAccess"),
    "get_partner": ("Policy.Read.All", "Policy.ReadWrite.CrossTenantAccess"),
    "create_partner": ("Policy.ReadWrite.CrossTenantAccess",),
    "update_partner": ("Policy.ReadWrite.CrossTenantAccess",),
    "delete_partner": ("Policy.ReadWrite.CrossTenantAccess",),
    "list_service_principals": ("Application.Read.All", "Application.ReadWrite.All", *_DIRECTORY_READ),
    "get_service_principal": ("Application.Read.All", "Application.ReadWrite.All", *_DIRECTORY_READ),
    "list_app_role_assignments": ("Application.Read.All", "Application.ReadWrite.All", *_DIRECTORY_READ),
    "find_tenant_information": ("CrossTenantInformation.ReadBasic.All",),
}
