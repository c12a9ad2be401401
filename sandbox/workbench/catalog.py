"""Workbench's static catalogue: vendors and plugins, and validation of a device's ``device_spec``.

The real M365 plugin slug and ``device_spec`` keys are not public (reference §7, §9); the onboarding
must discover them at run time from ``GET /api/v2/plugins``. The sandbox therefore serves several
plugins, two of them from vendor "Microsoft", so that code selecting the plugin by ``vendor_name``
alone picks wrong, and code reading ``device_spec_json`` learns the required keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.workbench.errors import InvalidResource
from sandbox.workbench.resources import Record

GUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
CATALOG_CREATED_AT = datetime(2021, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Vendor:
    """A technology vendor (``vendors`` resource)."""

    id: str
    name: str
    icon: str

    def to_record(self) -> Record:
        return Record(
            "vendors",
            self.id,
            {"name": self.name, "icon": self.icon, "created_at": CATALOG_CREATED_AT, "updated_at": CATALOG_CREATED_AT},
        )


MICROSOFT = Vendor("5f9e8a51-8d2b-4c55-9b0e-3f1c6a7d2e41", "Microsoft", "microsoft")
AMAZON = Vendor("0c3b7d62-2a4e-4f18-8e5d-9a1b2c3d4e5f", "Amazon Web Services", "aws")
CROWDSTRIKE = Vendor("a41d9c07-6b3e-4d2a-9f81-7c5e0b2a6d19", "CrowdStrike", "crowdstrike")
VENDORS: dict[str, Vendor] = {v.id: v for v in (MICROSOFT, AMAZON, CROWDSTRIKE)}


def _spec_schema(title: str, properties: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": title,
        "type": "object",
        "required": required,
        "additionalProperties": False,
        "properties": properties,
    }


_TENANT_ID = {
    "type": "string",
    "title": "Directory (tenant) ID",
    "description": "The Microsoft Entra tenant id (a GUID) of the customer's Microsoft 365 tenant.",
    "pattern": GUID_PATTERN,
}


@dataclass(frozen=True)
class Plugin:
    """An integration a security device is created from (``GET /api/v2/plugins``)."""

    slug: str
    display_name: str
    vendor: Vendor
    vendor_type: str
    device_spec_json: dict[str, Any]
    onboarding_doc_url: str

    def to_record(self) -> Record:
        return Record(
            "plugins",
            self.slug,
            {
                "plugin_slug": self.slug,
                "display_name": self.display_name,
                "vendor_name": self.vendor.name,
                "vendor_type": self.vendor_type,
                "company_name": self.vendor.name,
                "device_spec_json": self.device_spec_json,
                "onboarding_doc_url": self.onboarding_doc_url,
                "assembler_dependency": False,
                "assembler_for_console_only": False,
                "hide_console_login": True,
                "tasks": [],
                "service_offerings": ["MDR"],
                "sfa_integration_slug": None,
                "active": True,
                "internal_only": False,
                "is_investigative_tech": False,
                "depends_on": [],
                "version": "1.0.0",
                "organization_id": None,
            },
        )


def build_plugins(m365_slug: str) -> dict[str, Plugin]:
    """The plugin catalogue, with the Microsoft 365 plugin under the scenario's slug."""
    plugins = [
        Plugin(
            m365_slug,
            "Microsoft 365",
            MICROSOFT,
            "CLOUD",
            _spec_schema(
                "Microsoft 365",
                {"tenant_id": _TENANT_ID, "tenant_name": {"type": "string", "title": "Tenant organization name", "minLength": 1}},
                ["tenant_id", "tenant_name"],
            ),
            "https://support.expel.io/hc/en-us/articles/360061333174",
        ),
        Plugin(
            "azure_ad_identity_protection",
            "Microsoft Entra ID Protection",
            MICROSOFT,
            "CLOUD",
            _spec_schema("Microsoft Entra ID Protection", {"tenant_id": _TENANT_ID}, ["tenant_id"]),
            "https://support.expel.io/hc/en-us/articles/360061333134",
        ),
        Plugin(
            "aws",
            "Amazon Web Services CloudTrail",
            AMAZON,
            "CLOUD",
            _spec_schema(
                "Amazon Web Services CloudTrail",
                {
                    "aws_account_id": {"type": "string", "title": "AWS account ID", "pattern": "^[0-9]{12}$"},
                    "role_arn": {"type": "string", "title": "Cross-account role ARN", "minLength": 1},
                },
                ["aws_account_id", "role_arn"],
            ),
            "https://support.expel.io/hc/en-us/articles/360061333154",
        ),
        Plugin(
            "crowdstrike_falcon",
            "CrowdStrike Falcon",
            CROWDSTRIKE,
            "ENDPOINT",
            _spec_schema(
                "CrowdStrike Falcon",
                {"api_url": {"type": "string", "title": "Falcon API URL", "minLength": 1}},
                ["api_url"],
            ),
            "https://support.expel.io/hc/en-us/articles/360061333114",
        ),
    ]
    return {p.slug: p for p in plugins}


_JSON_TYPES: dict[str, type | tuple[type, ...]] = {"string": str, "boolean": bool, "integer": int, "number": (int, float)}


def validate_device_spec(spec: Any, plugin: Plugin) -> dict[str, Any]:
    """Check ``spec`` against the plugin's ``device_spec_json`` (the JSON Schema subset it uses).

    Raises:
        InvalidResource: the first problem found, naming the field (``device_spec.tenant_id ...``).
    """
    schema = plugin.device_spec_json
    if spec is None:
        raise InvalidResource(f"device_spec is required for plugin '{plugin.slug}'")
    if not isinstance(spec, dict):
        raise InvalidResource("device_spec must be an object")
    properties: dict[str, dict[str, Any]] = schema["properties"]
    for name in schema["required"]:
        if name not in spec or spec[name] is None:
            raise InvalidResource(f"device_spec.{name} is required ({properties[name]['title']})")
    for name, value in spec.items():
        rules = properties.get(name)
        if rules is None:
            if schema.get("additionalProperties") is False:
                raise InvalidResource(f"device_spec.{name} is not allowed for plugin '{plugin.slug}'")
            continue
        expected = _JSON_TYPES[rules["type"]]
        if not isinstance(value, expected) or (rules["type"] != "boolean" and isinstance(value, bool)):
            raise InvalidResource(f"device_spec.{name} must be a {rules['type']} ({rules['title']})")
        if isinstance(value, str):
            if len(value.strip()) < rules.get("minLength", 0):
                raise InvalidResource(f"device_spec.{name} must not be empty ({rules['title']})")
            if "pattern" in rules and not re.match(rules["pattern"], value):
                raise InvalidResource(f"device_spec.{name} is not a valid {rules['title']}: {value!r}")
    return dict(spec)
