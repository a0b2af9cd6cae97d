"""Post incidents to Slack through an incoming webhook: no token, no updates.

An incoming webhook (Slack app → Incoming Webhooks → Add New Webhook) posts into the
one channel it was created for. It cannot edit what it posted, so every event (opened,
acknowledged, resolved, ...) is a new message with the same Block Kit layout as the
`slack` kind, showing the incident's state at that moment. Prefer `slack` with a bot
token when you want one message per incident, updated in place, with a thread.

The webhook URL is a secret (anyone holding it can post): it is held as one, and never
logged or shown in errors.

```yaml
notify:
  - name: ops-webhook
    kind: slack_webhook
    # The webhook URL, inline from the environment...
    url: ${SLACK_WEBHOOK_URL}
    # ...or read from a file (first line); relative to the config file. Set one of the two.
    url_file: null
    # Text put in front of the alert for the severities below, e.g. <!here>.
    mention: null
    # Which severities get the mention.
    mention_on: [critical]
    # A web page per incident is linked as <link_base>/incidents/<id>; none by default.
    link_base: null
    # Longest wait for Slack's answer before the post counts as failed (and is retried).
    timeout: 10s
```
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from agent.durations import Duration
from agent.notices import Delivery, Notice, Severity
from agent.notifiers import _secrets
from agent.notifiers._slack_blocks import critical_only, fallback_text, message_blocks
from agent.notifiers._slack_errors import classify, guarded
from agent.notifiers.context import NotifierSpec, NotifyContext
from agent.redaction import Redactor


def _check_url(url: SecretStr) -> None:
    if not url.get_secret_value().startswith(("https://", "http://")):
        # Never echo the value: it is the secret.
        raise ValueError("expected an https:// webhook URL")


class SlackWebhookSpec(NotifierSpec):
    """A Slack incoming webhook."""

    kind: Literal["slack_webhook"]
    url: SecretStr | None = Field(default=None, description="The incoming-webhook URL.")
    url_file: Path | None = Field(
        default=None, description="File holding the webhook URL (first line)."
    )
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
        default=timedelta(seconds=10), description="Longest wait for Slack's answer."
    )

    @field_validator("url")
    @classmethod
    def _webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_url(value)
        return value

    @field_validator("url_file")
    @classmethod
    def _readable(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _secrets.readable_secret_file(value, info)

    @model_validator(mode="after")
    def _load_url(self) -> SlackWebhookSpec:
        url = _secrets.inline_or_file(self.url, self.url_file, name="url", required=True)
        assert url is not None
        _check_url(url)
        object.__setattr__(self, "url", url)
        return self

    @property
    def secret_url(self) -> str:
        """The URL's value (validation guarantees there is one)."""
        assert self.url is not None
        return self.url.get_secret_value()


async def send(spec: SlackWebhookSpec, notice: Notice, ctx: NotifyContext) -> Delivery:
    """Post the incident's current state as a new message."""
    url = spec.secret_url
    mention = spec.mention if spec.mention and notice.incident.severity in spec.mention_on else None
    # The webhook's channel is unknown to us; the URL identifies the destination.
    await ctx.pacer(("slack_webhook", url)).wait()
    response = await guarded(
        "slack webhook",
        ctx.slack_webhook(url).send(
            text=fallback_text(notice, mention),
            blocks=message_blocks(
                # No buttons: presses from an incoming webhook's message reach no agent.
                notice,
                mention=mention,
                link_base=spec.link_base,
                hooks=(),
            ),
            unfurl_links=False,
            unfurl_media=False,
        ),
        spec.timeout.total_seconds(),
        Redactor([url]),
    )
    if response.status_code == 200:
        return Delivery(detail="posted")
    # Webhooks answer errors as plain text: `no_service`, `channel_not_found`, ...
    code = (response.body or "").strip()[:100] or None
    raise classify("slack webhook", response.status_code, code, response.headers)


SPEC = SlackWebhookSpec
