"""The Block Kit message for an incident, shared by `slack` and `slack_webhook`.

The message is a pure function of the notice, so re-sending or updating it is
idempotent. Layout, top to bottom:

    header     severity emoji (✅ once resolved) + title
    section    fields: severity, probe, (entity), state, opened at, (resolved at)
    section    the summary, prefixed with the mention when configured
    section    evidence excerpt as a code block (at most 10 rows)
    section    links
    ...        blocks from `NotifyContext.block_hooks` (Approve/Reject buttons go here)
    context    agent name and incident id

Slack limits: header text 150 characters, section text 3,000, field text 2,000.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from agent.notices import Notice, NoticeEvent, Severity
from agent.notifiers import _text
from agent.notifiers.context import BlockHook

Block = dict[str, Any]
_HEADER_MAX = 150
_SECTION_MAX = 3000
_FIELD_MAX = 2000


def critical_only() -> list[Severity]:
    """The default `mention_on`: only critical incidents wake people up."""
    return ["critical"]


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_date(value: datetime) -> str:
    """A date Slack shows in each reader's time zone, with a UTC fallback text."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return f"<!date^{int(aware.timestamp())}^{{date_short_pretty}} {{time_secs}}|{_text.format_time(value)}>"


def _field(label: str, value: str) -> Block:
    return {"type": "mrkdwn", "text": _clip(f"*{label}*\n{value}", _FIELD_MAX)}


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, _SECTION_MAX)}}


def message_blocks(
    notice: Notice,
    *,
    mention: str | None = None,
    link_base: str | None = None,
    hooks: Iterable[BlockHook] = (),
) -> list[Block]:
    """The incident message as Block Kit blocks."""
    incident = notice.incident
    resolved = incident.state == "resolved"
    emoji = _text.RESOLVED_EMOJI if resolved else _text.SEVERITY_EMOJI[incident.severity]
    fields = [
        _field("Severity", incident.severity),
        _field("Probe", escape(incident.probe)),
    ]
    if incident.entity:
        fields.append(_field("Entity", escape(incident.entity)))
    fields.append(_field("State", escape(_text.state_label(incident))))
    fields.append(_field("Opened at", slack_date(incident.opened_at)))
    if incident.resolved_at is not None:
        fields.append(_field("Resolved at", slack_date(incident.resolved_at)))

    summary = escape(incident.summary)
    blocks: list[Block] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _clip(f"{emoji} {incident.title}", _HEADER_MAX),
                "emoji": True,
            },
        },
        {"type": "section", "fields": fields},
        _section(f"{mention} {summary}" if mention else summary),
    ]
    if incident.evidence:
        caption = _text.evidence_caption(incident.evidence)
        table = escape(_text.evidence_text(incident.evidence))
        # Leave room for the caption and the fences inside Slack's 3,000 characters.
        table = _clip(table, _SECTION_MAX - len(caption) - 16)
        blocks.append(_section(f"*{caption}*\n```{table}```"))
    found = _text.links(incident, link_base)
    if found:
        blocks.append(_section(" · ".join(f"<{url}|{escape(text)}>" for text, url in found)))
    for hook in hooks:
        blocks.extend(hook(notice))
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"opsagent *{escape(notice.agent_name)}* · incident #{incident.id}",
                }
            ],
        }
    )
    return blocks


def fallback_text(notice: Notice, mention: str | None = None) -> str:
    """The message's `text`: shown in notifications and by clients without blocks."""
    incident = notice.incident
    emoji = (
        _text.RESOLVED_EMOJI
        if incident.state == "resolved"
        else _text.SEVERITY_EMOJI[incident.severity]
    )
    line = f"{emoji} {_text.headline(notice)}: {incident.summary}"
    return f"{mention} {line}" if mention else line


def reply_text(notice: Notice, mention: str | None = None) -> str:
    """The thread reply describing a later event: `👀 *Acknowledged* by alice: on it`."""
    emoji = _text.EVENT_EMOJI[notice.event]
    label = notice.event.value.capitalize()
    detail = _text.detail(notice)
    # detail starts with the event word for ack/silence ("acknowledged by ..."); avoid
    # saying it twice.
    if detail.lower().startswith(notice.event.value):
        detail = detail[len(notice.event.value) :].lstrip(": ")
    line = f"{emoji} *{label}*" + (f" {escape(detail)}" if detail else "")
    if mention and notice.event in (NoticeEvent.REMINDER, NoticeEvent.ESCALATED):
        line = f"{mention} {line}"
    return line
