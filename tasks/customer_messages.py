"""Messages to the customer's contact: what only their admin can do, and reminders while it waits.

Sent through the block named by ``M365_ONBOARD_NOTIFICATIONS__CUSTOMER_BLOCK``: any Prefect
notification block (Slack, Teams, custom webhook …), or prefect-email's ``EmailServerCredentials``
(``email-server-credentials/<name>``), which mails the customer contact directly over SSL or
STARTTLS with certificate verification (a block that would send in clear or unverified is refused:
the messages carry the consent link). Each message goes once per run: the task is cached on (kind, run), so a re-executed run does not send it
again. The texts are ours; they carry the step's instructions (links, settings to change) and
never a secret.
"""

from __future__ import annotations

from collections.abc import Coroutine
from email.message import EmailMessage
from typing import Any

from prefect import get_run_logger, task
from prefect.blocks.core import Block
from prefect.blocks.notifications import NotificationBlock
from prefect.cache_policies import INPUTS, RUN_ID
from prefect.runtime import flow_run
from prefect.utilities.asyncutils import run_coro_as_sync
from prefect.variables import Variable
from prefect_email import EmailServerCredentials, SMTPType

from core.catalogue import WaitSpec
from core.requests import TenantRequest
from core.settings import OnboardingSettings, declared_settings
from tasks.caching import STEP_ID
from tasks.errors import UnusableChannel


def _asked(wait: WaitSpec) -> str:
    return wait.customer_action or f"finish {wait.name}"


def first_request(request: TenantRequest, contact: str, wait: WaitSpec, instructions: str | None, provider: str) -> tuple[str, str]:
    """The first message of a wait only the customer's admin can end: what to do, and how."""
    subject = f"{provider} onboarding of {request.organization_name}: please {_asked(wait)}"
    body = (
        f"To: {contact}\n"
        f"Hello, to finish connecting {request.organization_name} to {provider}, an administrator of your "
        f"Microsoft 365 tenant ({request.tenant_id}) needs to {_asked(wait)}.\n\n"
        f"{instructions or ''}\n\nWe check for the change regularly and carry on by ourselves once it is done."
    )
    return subject, body.strip()


def reminder(request: TenantRequest, contact: str, wait: WaitSpec, instructions: str | None, provider: str, waited_h: float) -> tuple[str, str]:
    """The one reminder, when the wait's reminder time has come and the change is not seen yet."""
    subject = f"Reminder: {provider} onboarding of {request.organization_name} is waiting for you"
    body = (
        f"To: {contact}\n"
        f"We asked {waited_h:.0f} hours ago for an administrator of {request.organization_name} to "
        f"{_asked(wait)}, and have not seen the change yet.\n\n{instructions or ''}"
    )
    return subject, body.strip()


def send_email(credentials: EmailServerCredentials, sender: str | None, to: str, subject: str, body: str) -> None:
    """One plain-text mail through the block's server (prefect-email opens and authenticates it)."""
    if credentials.smtp_type == SMTPType.INSECURE or not credentials.verify:  # the block's validator made it an SMTPType
        raise UnusableChannel("the email block sends in clear or without verifying the server's certificate; "
                              "set smtp_type SSL or STARTTLS and verify true (the messages carry the consent link)")
    sender = sender or credentials.username
    if not sender:
        raise UnusableChannel("no sender address: set M365_ONBOARD_NOTIFICATIONS__EMAIL_FROM or the email block's username")
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = subject, sender, to
    message.set_content(body.removeprefix(f"To: {to}\n"))  # the header says it already
    with credentials.get_server() as server:
        server.send_message(message)


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """A server briefly down is worth another try; a block that cannot work is not."""
    return not isinstance(state.result(raise_on_failure=False), UnusableChannel)


def _sent_marker(kind: str) -> str | None:
    """The Prefect variable that says this run's ``kind`` message went out; None outside a flow run."""
    run_id = flow_run.id
    return f"m365-sent-{run_id}-{kind}".lower().replace(".", "-") if run_id else None


def _already_sent(marker: str | None) -> bool:
    try:
        return marker is not None and Variable.get(marker, default=None) is not None
    except Exception:  # the API not answering: send, as before the marker existed (a second message beats none)
        return False


def _mark_sent(marker: str | None) -> None:
    if marker is None:
        return
    try:
        Variable.set(marker, "sent", overwrite=True)
    except Exception as exc:  # the message went out; only a crash before the task's result is stored would send it again
        get_run_logger().warning("message marker %s not saved: %s", marker, type(exc).__name__)


@task(
    name="notify_customer",
    task_run_name="notify-customer-{kind}",
    persist_result=True,
    cache_policy=STEP_ID + (INPUTS - "subject" - "body") + RUN_ID,  # once per kind and run, whatever the text
    retries=len(declared_settings().notifications.message_retry_delays_s),
    retry_delay_seconds=declared_settings().notifications.message_retry_delays_s,  # a webhook or mail server briefly down
    timeout_seconds=120,
    retry_condition_fn=_worth_retrying,
)
def notify_customer(request: TenantRequest, kind: str, subject: str, body: str, block_slug: str | None, contact: str | None = None) -> bool:
    """Send one message to the customer's contact through the configured block; False if none is configured.

    The task's cache keeps it to once per run, but a process killed after the message went out and
    before the result was stored would send it again: a marker (a Prefect variable per run and kind),
    saved right after sending and observed first, closes all but that last moment.
    """
    logger = get_run_logger()
    if block_slug is None:
        logger.info("tenant=%s message=%s not sent: no customer channel configured (NOTIFICATIONS__CUSTOMER_BLOCK); it is in the checklist",
                    request.tenant_id, kind)
        return False
    marker = _sent_marker(kind)
    if _already_sent(marker):
        logger.info("tenant=%s message=%s already sent by an earlier execution of this run; not sent again", request.tenant_id, kind)
        return True
    try:
        block = Block.load(block_slug)
    except ValueError as exc:  # no such block
        raise UnusableChannel(f"customer channel {block_slug!r}: {exc}") from exc
    if isinstance(block, EmailServerCredentials):
        if not contact:
            raise UnusableChannel("the customer channel is email but the onboarding request has no contact address")
        send_email(block, OnboardingSettings().notifications.email_from, contact, subject, body)
    elif isinstance(block, NotificationBlock):
        sent = block.notify(body=body, subject=subject)
        if isinstance(sent, Coroutine):  # a block that implements only the async notify of the base class
            run_coro_as_sync(sent)
    else:
        raise UnusableChannel(f"block {block_slug!r} is a {type(block).__name__}, not a notification block or email server")
    _mark_sent(marker)
    logger.info("tenant=%s message=%s sent to the customer's contact through %s", request.tenant_id, kind, block_slug)
    return True
