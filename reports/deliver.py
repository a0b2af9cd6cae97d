"""Email a rendered report through an email notifier's SMTP settings.

The message is multipart/alternative (text first, then the self-contained HTML), sent
with the same SMTP code paths and error mapping as incident emails
(`agent.notifiers.email`): STARTTLS or TLS, certificate checks, and `NotifyError` with
`permanent` telling a retry apart from a configuration problem.

The agent sends stored reports through the durable outbox: `send_stored` builds the
message from the files under `<data_dir>/reports/` named by a `ReportNotice`, with the
Message-ID chosen when the send was queued (`message_id`), so every attempt sends the
same message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path

from agent.errors import NotifyError
from agent.notices import Delivery, ReportNotice
from agent.notifiers.context import NotifierSpec, NotifyContext
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


def message_id(spec: EmailSpec, name: str, report_id: int, created_at: datetime) -> str:
    """The Message-ID of one stored report to one email notifier: the same on every attempt."""
    domain = parseaddr(spec.from_)[1].rpartition("@")[2] or "opsagent.invalid"
    stamp = created_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"<report.{name}.{report_id}.{stamp}.{spec.name}@{domain}>"


def stored_message(spec: EmailSpec, notice: ReportNotice) -> EmailMessage:
    """The email of a stored report, from its files; NotifyError (permanent) if they are gone."""
    try:
        text = Path(notice.text_path).read_text("utf-8")
        html = Path(notice.html_path).read_text("utf-8")
    except OSError as exc:
        raise NotifyError(
            f"report {notice.name} #{notice.report_id} cannot be read: {exc.strerror or exc} "
            f"({exc.filename})",
            permanent=True,
        ) from None
    message = EmailMessage()
    message["Subject"] = notice.subject
    message["From"] = spec.from_
    message["To"] = ", ".join(spec.to)
    message["Date"] = format_datetime(notice.created_at.astimezone(UTC))
    message["Message-ID"] = notice.message_id
    message["Auto-Submitted"] = "auto-generated"
    message["X-Opsagent-Report"] = notice.name
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


async def send_stored(spec: NotifierSpec, notice: ReportNotice, ctx: NotifyContext) -> Delivery:
    """Email a stored report (the outbox calls this); NotifyError as `send_email` raises it."""
    if not isinstance(spec, EmailSpec):
        raise NotifyError(
            f"notifier {spec.name!r} is a {spec.kind} notifier: reports are sent by email",
            permanent=True,
        )
    detail = await send_message(spec, stored_message(spec, notice), ctx)
    return Delivery(ref={"message_id": notice.message_id}, detail=detail)
