"""Turn slack-sdk failures into `NotifyError`s the outbox knows how to retry.

    HTTP 429                       transient, retry_after = the Retry-After header
    HTTP 5xx, timeouts, resets     transient
    auth / channel / scope errors  permanent (listed in PERMANENT): a retry cannot help
    other `ok: false` errors       transient: Slack adds codes over time, and the
                                   outbox's back-off caps the cost of a wrong guess

Messages name the API method and Slack's error code, never the token or webhook URL:
every message is passed through a redactor holding the spec's secrets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import TypeVar

import aiohttp

from agent.errors import NotifyError
from agent.notifiers._http import retry_after_seconds
from agent.redaction import Redactor

T = TypeVar("T")

PERMANENT = frozenset(
    {
        # Web API: the token or the app is wrong, or it cannot post where it was told to.
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "ekm_access_denied",
        "team_access_not_granted",
        "org_login_required",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        # Our payload is wrong; sending it again gives the same answer.
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "no_text",
        "invalid_arguments",
        "invalid_arg_name",
        # Incoming webhooks answer with these (as plain text and a 4xx status).
        "invalid_token",
        "no_service",
        "no_service_id",
        "no_team",
        "team_disabled",
        "action_prohibited",
        "channel_is_archived",
        "posting_to_general_channel_denied",
        "invalid_payload",
        "user_not_found",
    }
)
"""Slack error codes that no retry can fix."""

MESSAGE_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
"""chat.update errors after which a new message is posted instead."""


class SlackError(NotifyError):
    """A NotifyError that also keeps Slack's error code (`channel_not_found`, ...)."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        permanent: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.code = code
        super().__init__(message, permanent=permanent, retry_after=retry_after)


def classify(
    what: str, status: int, code: str | None, headers: Mapping[str, str] | None
) -> SlackError:
    """The error for an answer Slack gave: status code, error code, headers."""
    if status == 429 or code in ("ratelimited", "rate_limited"):
        wait = retry_after_seconds(headers)
        hint = f", retry after {wait:g}s" if wait is not None else ""
        return SlackError(
            f"{what}: rate limited (HTTP {status}{hint})", code=code, retry_after=wait
        )
    if status >= 500:
        return SlackError(f"{what}: Slack answered HTTP {status}", code=code)
    label = code or "unknown error"
    return SlackError(f"{what}: {label} (HTTP {status})", code=code, permanent=code in PERMANENT)


async def guarded(what: str, call: Awaitable[T], seconds: float, redactor: Redactor) -> T:
    """Await one Slack call for at most `seconds`, mapping every failure to a SlackError."""
    from slack_sdk.errors import SlackApiError  # loaded with the Slack client, not before

    try:
        async with asyncio.timeout(seconds):
            return await call
    except SlackApiError as exc:
        response = exc.response
        data = response.data if isinstance(response.data, dict) else {}
        error = data.get("error")
        raise classify(
            what, response.status_code, error if isinstance(error, str) else None, response.headers
        ) from None
    except TimeoutError:
        raise SlackError(f"{what}: no answer within {seconds:g}s") from None
    except aiohttp.ClientError as exc:
        # Connection refused or reset, DNS, TLS: the network, worth a retry.
        reason = redactor.redact(str(exc) or type(exc).__name__)
        raise SlackError(f"{what}: {reason}") from None
