"""Exchange Online admin API (``InvokeCommand``) errors with the body the real service sends.

Shape, from responses captured on live tenants (public client code; reference §7)::

    {"error": {"code": "BadRequest", "message": "Error executing cmdlet",
               "details": [{"code": "Client", "target": "", "message": "|<ExceptionType>|<text>"}],
               "innererror": {"message": "…", "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                              "stacktrace": "", "internalexception": {"message": "…", "type": "…", "stacktrace": ""}},
               "adminapi.warnings@odata.type": "#Collection(String)", "@adminapi.warnings": []}}

``error.message`` is generic ("Error executing cmdlet", "Invalid Operation"): the useful text is in
``details[].message`` (prefixed ``|ExceptionType|``) or ``innererror.internalexception.message``
(all lower case on the wire), which is why callers read them in that order. Errors a cmdlet raises
while running carry a generic ``DirectInvokeCmdletExecutionException`` as internal exception, as
observed; parameter errors carry the specific exception there.
"""

from __future__ import annotations

from typing import Any

from sandbox.core.errors import ErrorSet, SandboxHTTPError

ODATA_EXCEPTION = "Microsoft.Exchange.Admin.OData.Core.ODataServiceException"
DIRECT_INVOKE_EXCEPTION = "Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletExecutionException"
DEHYDRATED_EXCEPTION = "Microsoft.Exchange.Configuration.Tasks.InvalidOperationInDehydratedContextException"
DEHYDRATED_TEXT = (
    "The command you tried to run isn't currently allowed in your organization. To run this command, "
    "you first need to run the command: Enable-OrganizationCustomization."
)
ALREADY_CUSTOMIZED_TEXT = "This operation is not required. Organization is already enabled for customization."
EMULATED_NOTE = "The sandbox emulates Get-AdminAuditLogConfig, Set-AdminAuditLogConfig, Get-OrganizationConfig and Enable-OrganizationCustomization."
# The resource's app id, as Exchange's 401 challenge names it.
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"


def _exception(message: str, exception_type: str) -> dict[str, str]:
    return {"message": message, "type": exception_type, "stacktrace": ""}


class ExchangeError(SandboxHTTPError):
    """One InvokeCommand error; subclasses fix the status and ``error.code``."""

    status_code = 400
    code = "BadRequest"

    def __init__(
        self,
        message: str,
        *,
        detail: str | None = None,
        internal: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        inner: dict[str, Any] = {"message": message, "type": ODATA_EXCEPTION, "stacktrace": ""}
        if internal is not None:
            inner["internalexception"] = internal
        error: dict[str, Any] = {"code": self.code, "message": message}
        if detail is not None:
            error["details"] = [{"code": "Client", "target": "", "message": detail}]
        error["innererror"] = inner
        error["adminapi.warnings@odata.type"] = "#Collection(String)"
        error["@adminapi.warnings"] = []
        super().__init__(self.status_code, {"error": error}, headers)
        self.message = message


class BadRequest(ExchangeError):
    """400 for a request the service cannot read (no CmdletInput, body not JSON)."""


class CmdletFailed(ExchangeError):
    """400: the cmdlet ran and refused, e.g. on a dehydrated org. Text in ``details`` only."""

    def __init__(self, exception_type: str, text: str) -> None:
        generic = f"Exception of type '{DIRECT_INVOKE_EXCEPTION}' was thrown."
        super().__init__(
            "Error executing cmdlet",
            detail=f"|{exception_type}|{text}",
            internal=_exception(generic, DIRECT_INVOKE_EXCEPTION),
        )


class OrganizationDehydrated(CmdletFailed):
    """A write on an org that never ran Enable-OrganizationCustomization (FailureCategory
    ``Cmdlet-InvalidOperationInDehydratedContextException`` in PowerShell's error record)."""

    def __init__(self) -> None:
        super().__init__(DEHYDRATED_EXCEPTION, DEHYDRATED_TEXT)


class AlreadyCustomized(CmdletFailed):
    """Enable-OrganizationCustomization run a second time (PowerShell shows Cmdlet-InvalidOperationException)."""

    def __init__(self) -> None:
        super().__init__("System.InvalidOperationException", ALREADY_CUSTOMIZED_TEXT)


class InvalidParameters(ExchangeError):
    """400 for parameters the cmdlet does not have (live shape: details and inner exception)."""

    def __init__(self, names: list[str]) -> None:
        exception_type = "Microsoft.Exchange.AdminApi.CommandInvocation.AmbiguousParameterSetException"
        text = f"Parameter set cannot be resolved using the specified named parameters. Invalid cmdlet parameters specified. {', '.join(names)}"
        super().__init__("Invalid Operation", detail=f"|{exception_type}|{text}", internal=_exception(text, exception_type))


class ParameterTransformation(ExchangeError):
    """400 for a parameter value of the wrong type (live shape: inner exception only, no details)."""

    def __init__(self, name: str, value: Any, target_type: str) -> None:
        text = (
            f"Cannot process argument transformation on parameter '{name}'. Cannot convert value \"{value}\" to type "
            f"\"{target_type}\". Error: \"Boolean parameters accept only Boolean values and numbers, such as $True, $False, 1 or 0.\""
        )
        super().__init__(
            "Invalid Operation",
            internal=_exception(text, "Microsoft.Exchange.AdminApi.CommandInvocation.ParameterTransformationException"),
        )


class CommandNotFound(ExchangeError):
    """400 for a cmdlet that does not exist or that the sandbox does not emulate."""

    def __init__(self, cmdlet: str) -> None:
        exception_type = "System.Management.Automation.CommandNotFoundException"
        text = (
            f"The term '{cmdlet}' is not recognized as a name of a cmdlet, function, script file, or executable program. "
            "Check the spelling of the name, or if a path was included, verify that the path is correct and try again."
        )
        super().__init__(f"Invalid Operation. {EMULATED_NOTE}", detail=f"|{exception_type}|{text}", internal=_exception(text, exception_type))


class NeedsProxy(ExchangeError):
    """400 seen when enabling ingestion without an X-AnchorMailbox header (reference §7)."""

    def __init__(self) -> None:
        super().__init__(
            "Cmdlet needs proxy. Current Server FQDN : SANDBOX01MB0001.NAMPRD01.PROD.OUTLOOK.COM, "
            "Required Server FQDN : SANDBOX01MB0002.NAMPRD01.PROD.OUTLOOK.COM"
        )


class Unauthorized(ExchangeError):
    """401: no usable token, a token for another tenant, or no Exchange.ManageAsApp role.

    Outlook's front end explains a 401 in ``x-ms-diagnostics`` (``<code>;reason=…;error_category=…``);
    the JSON body is the sandbox's, so that callers' usual parse order finds the reason.
    """

    status_code = 401
    code = "Unauthorized"

    def __init__(self, reason: str, diagnostic_code: int = 2000001, category: str = "invalid_token") -> None:
        headers = {
            "WWW-Authenticate": (
                f'Bearer client_id="{EXCHANGE_APP_ID}", trusted_issuers="00000001-0000-0000-c000-000000000000@*", '
                'token_types="app_asserted_user_v1 service_asserted_app_v1", '
                'authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="invalid_token"'
            ),
            "x-ms-diagnostics": f'{diagnostic_code};reason="{reason}";error_category="{category}"',
        }
        super().__init__(reason, headers=headers)


class NoSupportedRole(ExchangeError):
    """403: Exchange.ManageAsApp granted, but the service principal holds no supported Entra role."""

    status_code = 403
    code = "Forbidden"

    def __init__(self) -> None:
        super().__init__(
            "The application has the Exchange.ManageAsApp permission but its service principal holds no Microsoft Entra "
            "role that Exchange Online supports for app-only access (for example Exchange Administrator or Global Reader)."
        )


class NotAllowedToCall(ExchangeError):
    """403 for a cmdlet outside the caller's roles (body as observed: code Unauthorized, no details)."""

    status_code = 403
    code = "Unauthorized"

    def __init__(self, cmdlet: str) -> None:
        super().__init__(f"User is not allowed to call {cmdlet}")


class TenantNotFound(ExchangeError):
    """404 for a tenant that has no Exchange Online organization in the sandbox."""

    status_code = 404
    code = "NotFound"

    def __init__(self, tenant_ref: str) -> None:
        super().__init__(f"The organization '{tenant_ref}' was not found: it has no Exchange Online organization.")


class TooManyRequests(ExchangeError):
    status_code = 429
    code = "TooManyRequests"

    def __init__(self, retry_after_s: int | None) -> None:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
        super().__init__("The request was throttled. Retry the request later.", headers=headers)


class ServiceUnavailable(ExchangeError):
    status_code = 503
    code = "ServiceUnavailable"

    def __init__(self, retry_after_s: int | None) -> None:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
        super().__init__("The service is temporarily unavailable. Retry the request later.", headers=headers)


class NotEmulated(ExchangeError):
    """Loud refusal for a path the sandbox does not emulate (moto's NotYetImplemented)."""

    status_code = 501
    code = "NotEmulated"


ERRORS = ErrorSet(
    request_id_header="request-id",
    throttled=TooManyRequests,
    unavailable=ServiceUnavailable,
    not_emulated_builder=NotEmulated,
    bad_request=BadRequest,
    not_emulated_hint=" Use POST /adminapi/beta/{tenant}/InvokeCommand.",
)

