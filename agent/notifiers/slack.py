"""Post incidents to a Slack channel with a bot token, and update them in place.

The first notice of an incident posts a Block Kit message (`chat.postMessage`); its
channel and `ts` become the delivery ref. Every later notice (acknowledged, silenced,
resolved, reminder, escalated, flapping) rewrites that same message to show the new
state (`chat.update`) and adds a reply in its thread saying what happened and who did
it. Messages to one channel are paced at about one per second, as Slack asks.

The bot needs the `chat:write` scope and must be a member of the channel (invite it
with `/invite @yourbot`); otherwise Slack answers `not_in_channel`, a permanent error.

```yaml
notify:
  - name: ops-slack
    kind: slack
    # The bot token (xoxb-...), inline from the environment...
    token: ${SLACK_BOT_TOKEN}
    # ...or read from a file (first line); relative to the config file. Set one of the two.
    token_file: null
    # The channel to post in: a name (#ops) or an ID (C0123456789).
    channel: "#ops"
    # Slack's Web API; change only for a proxy or for tests.
    base_url: https://slack.com/api/
    # Text put in front of the alert for the severities below, e.g. <!here> or <@U024BE7LH>.
    mention: "<!here>"
    # Which severities get the mention.
    mention_on: [critical]
    # A web page per incident is linked as <link_base>/incidents/<id>; none by default.
    link_base: null
    # Longest wait for one Slack API call before it counts as failed (and is retried).
    timeout: 10s
    # The Slack app's signing secret: repairs awaiting approval get Approve/Reject
    # buttons, which Slack sends to POST /v1/slack/actions (the app's Interactivity
    # request URL, through a TLS proxy in front of the API). None: no buttons.
    signing_secret: ${SLACK_SIGNING_SECRET}
    # Who may press them: Slack user IDs or user names; required with signing_secret.
    allowed_users: [U024BE7LH, alice]
```
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from agent.durations import Duration
from agent.notices import Delivery, Notice, NoticeEvent, Severity
from agent.notifiers import _secrets
from agent.notifiers._slack_blocks import critical_only, fallback_text, message_blocks, reply_text
from agent.notifiers._slack_errors import MESSAGE_GONE, SlackError, guarded
from agent.notifiers.context import BlockHook, NotifierSpec, NotifyContext
from agent.redaction import Redactor

if TYPE_CHECKING:  # slack_sdk is loaded by NotifyContext.slack_client, when first used
    from slack_sdk.web.async_client import AsyncWebClient
    from slack_sdk.web.async_slack_response import AsyncSlackResponse

# Events worth a channel-wide echo of the thread reply: they exist to get attention.
_BROADCAST = frozenset({NoticeEvent.REMINDER, NoticeEvent.ESCALATED})


class SlackSpec(NotifierSpec):
    """A Slack channel reached through the Web API with a bot token."""

    kind: Literal["slack"]
    token: SecretStr | None = Field(default=None, description="The bot token (xoxb-...).")
    token_file: Path | None = Field(
        default=None, description="File holding the bot token (first line)."
    )
    channel: str = Field(min_length=1, description="Channel name (#ops) or ID to post in.")
    base_url: str = Field(default="https://slack.com/api/", description="Slack's Web API base URL.")
    mention: str | None = Field(
        default=None, description="Mention put in front of alerts, e.g. <!here>."
    )
    mention_on: list[Severity] = Field(
        default_factory=critical_only, description="Severities that get the mention."
    )
    link_base: str | None = Field(
        default=None, description="Base URL of an incident page (<link_base>/incidents/<id>)."
    )
    timeout: Duration = Field(
        default=timedelta(seconds=10), description="Longest wait for one API call."
    )
    signing_secret: SecretStr | None = Field(
        default=None,
        description="The Slack app's signing secret: enables Approve/Reject buttons on "
        "repairs awaiting approval, answered at POST /v1/slack/actions (put a TLS proxy "
        "in front of the API and set that URL as the app's Interactivity request URL).",
    )
    allowed_users: list[str] = Field(
        default_factory=list,
        description="Slack user IDs (U0123...) or user names who may press Approve/Reject; "
        "required with signing_secret. Everyone else is refused (and audited).",
    )

    @field_validator("token_file")
    @classmethod
    def _readable(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _secrets.readable_secret_file(value, info)

    @field_validator("base_url", "link_base")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _load_token(self) -> SlackSpec:
        token = _secrets.inline_or_file(self.token, self.token_file, name="token", required=True)
        object.__setattr__(self, "token", token)
        if self.signing_secret is not None and not self.allowed_users:
            raise ValueError(
                "signing_secret enables Approve/Reject buttons: list who may press them in "
                "allowed_users (Slack user IDs or names)"
            )
        return self

    @property
    def secret_token(self) -> str:
        """The token's value (validation guarantees there is one)."""
        assert self.token is not None
        return self.token.get_secret_value()


def _hooks(spec: SlackSpec, ctx: NotifyContext) -> tuple[BlockHook, ...]:
    """Extra blocks (Approve/Reject buttons) only where presses can reach the agent."""
    return ctx.block_hooks if spec.signing_secret is not None else ()


def _mention_for(spec: SlackSpec, notice: Notice) -> str | None:
    return spec.mention if spec.mention and notice.incident.severity in spec.mention_on else None


async def _post(
    spec: SlackSpec, ctx: NotifyContext, client: AsyncWebClient, **args: Any
) -> AsyncSlackResponse:
    """chat.postMessage, after waiting for the channel's next slot."""
    await ctx.pacer(("slack", spec.base_url, spec.channel)).wait()
    return await guarded(
        "slack chat.postMessage",
        client.chat_postMessage(**args),
        spec.timeout.total_seconds(),
        Redactor([spec.secret_token]),
    )


async def _post_root(
    spec: SlackSpec, notice: Notice, ctx: NotifyContext, client: AsyncWebClient
) -> Delivery:
    mention = _mention_for(spec, notice)
    response = await _post(
        spec,
        ctx,
        client,
        channel=spec.channel,
        text=fallback_text(notice, mention),
        blocks=message_blocks(
            notice, mention=mention, link_base=spec.link_base, hooks=_hooks(spec, ctx)
        ),
        unfurl_links=False,
        unfurl_media=False,
    )
    channel, ts = str(response["channel"]), str(response["ts"])
    return Delivery(ref={"channel": channel, "ts": ts}, detail=f"posted {channel} {ts}")


def _root_of(ref: Mapping[str, str] | None) -> tuple[str, str] | None:
    if ref and ref.get("channel") and ref.get("ts"):
        return ref["channel"], ref["ts"]
    return None


async def send(spec: SlackSpec, notice: Notice, ctx: NotifyContext) -> Delivery:
    """Post the incident's message, or update it and reply in its thread."""
    client = ctx.slack_client(spec.secret_token, spec.base_url)
    root = _root_of(ctx.previous_ref)
    if notice.event is NoticeEvent.OPENED or root is None:
        # No message to update (first notice, or the first send never succeeded).
        return await _post_root(spec, notice, ctx, client)
    channel, ts = root
    mention = _mention_for(spec, notice)
    redactor = Redactor([spec.secret_token])
    try:
        # Update first: it is idempotent, so when the reply below fails and the outbox
        # retries the notice, the message is rewritten, not duplicated.
        await guarded(
            "slack chat.update",
            client.chat_update(
                channel=channel,
                ts=ts,
                text=fallback_text(notice),
                blocks=message_blocks(notice, link_base=spec.link_base, hooks=_hooks(spec, ctx)),
            ),
            spec.timeout.total_seconds(),
            redactor,
        )
    except SlackError as exc:
        if exc.code not in MESSAGE_GONE:
            raise
        # Someone deleted the message (or it is too old to edit): start a new one.
        return await _post_root(spec, notice, ctx, client)
    reply = await _post(
        spec,
        ctx,
        client,
        channel=channel,
        thread_ts=ts,
        text=reply_text(notice, mention),
        reply_broadcast=notice.event in _BROADCAST,
    )
    return Delivery(
        ref={"channel": channel, "ts": ts},
        detail=f"updated {channel} {ts}, replied {reply['ts']}",
    )


SPEC = SlackSpec
