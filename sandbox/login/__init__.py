"""Emulated Microsoft Entra login: OIDC discovery, the client-credentials token endpoint, admin consent."""
