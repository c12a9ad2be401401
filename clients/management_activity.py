"""Office 365 Management Activity API: subscriptions and content listings for one tenant.

Branches on ``error.code`` (AF…), never on the status alone: AF429 comes as 403 in Microsoft's own
example, and AF20024 ("already enabled") is a 400 that means success. A tenant whose auditing is
not in effect is refused with a 400 whose code is not an AF code; :func:`_audit_not_in_effect` is the
one place that reads its text. Every call carries ``PublisherIdentifier`` (the provider's tenant id)
so the provider gets its own quota.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clients.errors import (
    ApiError,
    AuditLogOff,
    BadRequest,
    NoSubscription,
    SubscriptionAlreadyEnabled,
    Throttled,
    missing_permission,
)
from clients.http import ApiClient

ALREADY_ENABLED = "AF20024"
NO_SUBSCRIPTION = "AF20022"
PERMISSION_MISSING = "AF10001"


def _audit_not_in_effect(message: str) -> bool:
    """The service's own exception text when the tenant's unified audit log is off or not in effect yet."""
    return "DataServiceException" in message or "does not exist" in message


class Subscription(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    content_type: str = Field(alias="contentType")
    status: str


class ContentBlob(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    content_type: str = Field(alias="contentType")
    content_id: str = Field(alias="contentId")
    content_uri: str = Field(alias="contentUri")
    content_created: datetime = Field(alias="contentCreated")


class ManagementActivityClient(ApiClient):
    service = "management_activity"

    def __init__(self, *args: Any, publisher_id: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.publisher_id = publisher_id

    def error_class(self, status: int, code: str | None) -> type[ApiError]:
        if code == "AF429":
            return Throttled
        return super().error_class(status, code)

    def translate(self, error: ApiError) -> ApiError:
        if error.code == PERMISSION_MISSING:
            return missing_permission(
                error, "ActivityFeed.Read",
                f"the provider's app needs ActivityFeed.Read (Office 365 Management APIs) in tenant {self.tenant_id}",
                next_action="Have the customer's admin grant ActivityFeed.Read (re-open the admin-consent link).",
            )
        if not isinstance(error, BadRequest):
            return error
        if error.code == ALREADY_ENABLED:
            return SubscriptionAlreadyEnabled.from_error(error)
        if error.code == NO_SUBSCRIPTION:
            return NoSubscription.from_error(error)
        if _audit_not_in_effect(error.api_message):
            return AuditLogOff.from_error(error, f"tenant {self.tenant_id}: the Management Activity API refuses it because auditing is not in effect yet")
        return error

    def _path(self, operation: str) -> str:
        return f"/api/v1.0/{self.tenant_id}/activity/feed/subscriptions/{operation}"

    def _params(self, **extra: str) -> dict[str, str]:
        return {"PublisherIdentifier": self.publisher_id, **extra}

    def start_subscription(self, content_type: str) -> Subscription:
        """Start (or confirm) a subscription. Raises AuditLogOff while auditing is not in effect."""
        try:
            data = self.request("POST", self._path("start"), operation="subscriptions/start", params=self._params(contentType=content_type)).json()
        except SubscriptionAlreadyEnabled:
            return Subscription(content_type=content_type, status="enabled")
        return Subscription.model_validate(data)

    def stop_subscription(self, content_type: str) -> None:
        """Stop a subscription (content already delivered stays listable for a while)."""
        self.request("POST", self._path("stop"), operation="subscriptions/stop", params=self._params(contentType=content_type))

    def list_subscriptions(self) -> list[Subscription]:
        data = self.request("GET", self._path("list"), operation="subscriptions/list", params=self._params()).json()
        return [Subscription.model_validate(s) for s in data]

    def list_content(self, content_type: str, start: datetime | None = None, end: datetime | None = None) -> list[ContentBlob]:
        """Content blobs of one type in a window (default: the last 24 h), following ``NextPageUri`` on the service's own host."""
        operation = "subscriptions/content"
        params = self._params(contentType=content_type)
        if start and end:
            params |= {"startTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "endTime": end.strftime("%Y-%m-%dT%H:%M:%S")}
        response = self.request("GET", self._path("content"), operation=operation, params=params)
        blobs = [ContentBlob.model_validate(b) for b in response.json()]
        # The next page's URI carries the whole query (the window and the PublisherIdentifier).
        while next_url := self.next_page(response.headers.get("NextPageUri"), response, operation=operation):
            response = self.request("GET", next_url, operation=operation)
            blobs.extend(ContentBlob.model_validate(b) for b in response.json())
        return blobs
