"""Emulated Microsoft Graph v1.0: organization, users, invitations, directory roles, cross-tenant partners, service principals."""
