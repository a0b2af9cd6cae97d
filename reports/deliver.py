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

import aiosmtplib

from agent.notifiers.context import NotifyContext
from agent.notifiers.email import EmailSpec, _as_notify_error
from agent.redaction import Redactor
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
    smtp = spec.smtp
    password = smtp.password.get_secret_value() if smtp.password else None
    redactor = Redactor([password] if password else [])
    where = f"smtp {smtp.host}:{smtp.effective_port}"
    try:
        errors, _ = await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.effective_port,
            username=smtp.username,
            password=password,
            use_tls=smtp.tls,
            start_tls=smtp.starttls,
            timeout=smtp.timeout.total_seconds(),
            tls_context=ctx.tls_context(smtp.ca_file, smtp.validate_certs),
        )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise _as_notify_error(where, exc, redactor) from None
    message_id = message["Message-ID"]
    if errors:
        return f"sent {message_id}; refused: {', '.join(sorted(errors))}"
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
