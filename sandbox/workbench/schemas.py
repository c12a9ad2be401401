"""The emulated resource types: their attributes (with kinds), enums and relationships.

Names and enums come from pyexclient's generated bindings (reference §3-§5). Only what the onboarding
reads is modelled; a filter on any other key gets the real 403 "Invalid filter", which is what the
real server answers for keys it does not have (and a loud hint here for keys the sandbox lacks).
"""

from __future__ import annotations

from sandbox.workbench.resources import Relationship, ResourceSchema

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "TESTING", "TUNING")
DEVICE_STATUSES = ("healthy", "unhealthy", "health_checks_not_supported")
DEVICE_TYPES = ("ENDPOINT", "NETWORK", "SIEM", "OTHER", "CLOUD")
TASK_SOURCES = ("CUSTOMER_PREMISE", "EXPEL_TASKPOOL")

_STAMPS = {"created_at": "datetime", "updated_at": "datetime"}

ORGANIZATIONS = ResourceSchema(
    type="organizations",
    attributes={
        **_STAMPS,
        "name": "string",
        "short_name": "string",
        "organization_type": "enum",
        "is_testing_organization": "boolean",
        "service_start_at": "datetime",
        "service_end_at": "datetime",
        "o365_tos_id": "string",
        "deleted_at": "datetime",
    },
    relationships={
        "security_devices": Relationship("security_devices", many=True),
        "vendor_alerts": Relationship("vendor_alerts", many=True),
        "expel_alerts": Relationship("expel_alerts", many=True),
    },
    enums={"organization_type": ("standard", "prospect", "free_trial", "demo", "partner", "test_temp", "test_perm")},
)

VENDORS = ResourceSchema(
    type="vendors",
    attributes={**_STAMPS, "name": "string", "icon": "string"},
    relationships={
        "security_devices": Relationship("security_devices", many=True),
        "vendor_alerts": Relationship("vendor_alerts", many=True),
        "expel_alerts": Relationship("expel_alerts", many=True),
    },
)

SECURITY_DEVICES = ResourceSchema(
    type="security_devices",
    attributes={
        **_STAMPS,
        "name": "string",
        "location": "string",
        "plugin_slug": "string",
        "device_spec": "object",
        "device_type": "enum",
        "task_source": "enum",
        "status": "enum",
        "status_details": "object",
        "status_updated_at": "datetime",
        "is_verifying_status": "boolean",
        "no_alert_threshold_hours": "number",
        "has_console_credentials": "boolean",
        "has_two_factor_secret": "boolean",
        "properties": "object",
        "deleted_at": "datetime",
    },
    relationships={
        "organization": Relationship("organizations"),
        "vendor": Relationship("vendors"),
        "assembler": Relationship("assemblers"),
        "parent_security_device": Relationship("security_devices"),
        "child_security_devices": Relationship("security_devices", many=True),
        "vendor_alerts": Relationship("vendor_alerts", many=True),
    },
    enums={"status": DEVICE_STATUSES, "device_type": DEVICE_TYPES, "task_source": TASK_SOURCES},
)

VENDOR_ALERTS = ResourceSchema(
    type="vendor_alerts",
    attributes={
        **_STAMPS,
        "first_seen": "datetime",
        "status": "enum",
        "vendor_severity": "enum",
        "vendor_sig_name": "string",
        "vendor_message": "string",
        "signature_id": "string",
        "description": "string",
        "original_alert_id": "string",
        "original_source_id": "string",
        "evidence_summary": "object",
        "evidence_activity_start_at": "datetime",
        "evidence_activity_end_at": "datetime",
    },
    relationships={
        "security_device": Relationship("security_devices"),
        "organization": Relationship("organizations"),
        "vendor": Relationship("vendors"),
        "expel_alerts": Relationship("expel_alerts", many=True),
    },
    enums={"status": ("NORMAL", "PROVISIONAL"), "vendor_severity": SEVERITIES},
)

EXPEL_ALERTS = ResourceSchema(
    type="expel_alerts",
    attributes={
        **_STAMPS,
        "expel_alert_time": "datetime",
        "status": "enum",
        "status_updated_at": "datetime",
        "expel_severity": "enum",
        "alert_type": "enum",
        "expel_name": "string",
        "expel_message": "string",
        "expel_alias_name": "string",
        "expel_signature_id": "string",
        "expel_version": "string",
        "close_reason": "string",
        "close_comment": "string",
        "vendor_alert_count": "number",
        "activity_first_at": "datetime",
        "activity_last_at": "datetime",
    },
    relationships={
        "organization": Relationship("organizations"),
        "vendor": Relationship("vendors"),
        "vendor_alerts": Relationship("vendor_alerts", many=True),
    },
    enums={
        "status": ("OPEN", "IN_PROGRESS", "CLOSED"),
        "expel_severity": SEVERITIES,
        "alert_type": (
            "ENDPOINT",
            "NETWORK",
            "SIEM",
            "RULE_ENGINE",
            "EXTERNAL",
            "OTHER",
            "CLOUD",
            "PHISHING_SUBMISSION",
            "PHISHING_SUBMISSION_SIMILAR",
        ),
    },
)

PLUGINS = ResourceSchema(
    type="plugins",
    attributes={
        "plugin_slug": "string",
        "display_name": "string",
        "vendor_name": "string",
        "vendor_type": "string",
        "company_name": "string",
        "device_spec_json": "object",
        "active": "boolean",
        "internal_only": "boolean",
        "version": "string",
    },
)

SCHEMAS: dict[str, ResourceSchema] = {
    s.type: s for s in (ORGANIZATIONS, VENDORS, SECURITY_DEVICES, VENDOR_ALERTS, EXPEL_ALERTS, PLUGINS)
}
