"""Email a rendered report through an email notifier's SMTP settings.

The message is multipart/alternative (text first, then the self-contained HTML), sent
with the same SMTP code paths and error mapping as incident emails
(`agent.notifiers.email`): STARTTLS or TLS, certificate checks, and `NotifyError` with
`permanent` telling a retry apart from a configuration problem. Sending through the
durable outbox (retry, never twice) is the next step; this module is what the outbox
will call.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from agent.notifiers.context import NotifyContext
from agent.notifiers.email import EmailSpec, send_email
from reports.data import ReportData
from reports.render import render_html, render_text, subject
from reports.settings import SECTIONS, Section


def build_message(
    spec: EmailSpec,
    data: ReportData,
    *,
    title: str,
    agent_name: str,
    sections: Sequence[Section] = SECTIONS,
) -> EmailMessage:
    """The report's email: subject with the headline figures, text and HTML parts."""
    domain = parseaddr(spec.from_)[1].rpartition("@")[2] or "opsagent.invalid"
    message = EmailMessage()
    message["Subject"] = subject(data, title, agent_name)
    message["From"] = spec.from_
    message["To"] = ", ".join(spec.to)
    message["Date"] = format_datetime(data.generated_at.astimezone(UTC))
    message["Message-ID"] = make_msgid(domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Opsagent-Report"] = title
    message.set_content(render_text(data, title=title, sections=sections, agent_name=agent_name))
    message.add_alternative(
        render_html(data, title=title, sections=sections, agent_name=agent_name), subtype="html"
    )
    return message


async def send_message(spec: EmailSpec, message: EmailMessage, ctx: NotifyContext) -> str:
    """Send through the spec's SMTP server; a one-line detail, or `NotifyError`."""
    refused = await send_email(spec, message, ctx)
    message_id = message["Message-ID"]
    if refused:
        return f"sent {message_id}; refused: {', '.join(refused)}"
    return f"sent {message_id}"


async def send_report(
    spec: EmailSpec,
    data: ReportData,
    ctx: NotifyContext,
    *,
    title: str,
    sections: Sequence[Section] = SECTIONS,
) -> str:
    """Render and email one report; returns the delivery detail."""
    message = build_message(spec, data, title=title, agent_name=ctx.agent_name, sections=sections)
    return await send_message(spec, message, ctx)
