"""Email incidents over SMTP: multipart text + HTML, one thread per incident.

Subjects say what happened: `[opsagent] CRITICAL shop-api failing` when an incident
opens, then `[opsagent] ACKNOWLEDGED ...`, `[opsagent] RESOLVED ...`. Every later email
carries `In-Reply-To` and `References` pointing at the first one's Message-ID, so mail
clients show an incident as one conversation. The bodies are rendered from
`agent/notifiers/templates/alert.txt.j2` and `alert.html.j2`.

Connections use STARTTLS (port 587) by default, or implicit TLS (`tls: true`, port 465),
and verify the server's certificate. A username is refused without TLS unless the
server is on this machine, so a password never crosses a network in clear text.

```yaml
notify:
  - name: ops-email
    kind: email
    smtp:
      # The SMTP server.
      host: smtp.example.com
      # Default 587 with starttls, 465 with tls, 25 with neither.
      port: 587
      # Upgrade the connection with STARTTLS (required when true).
      starttls: true
      # Connect with TLS from the start (SMTPS, port 465) instead of STARTTLS.
      tls: false
      # Log in with this user; none by default (an open relay on localhost, say).
      username: opsagent
      # The password inline, from the environment...
      password: ${SMTP_PASSWORD}
      # ...or read from a file (first line); relative to the config file. Set at most one.
      password_file: null
      # Longest wait for each step of the SMTP conversation.
      timeout: 10s
      # Verify the server's certificate and host name.
      validate_certs: true
      # A PEM file of CA certificates to trust instead of the system's; none by default.
      ca_file: null
    # The sender, optionally with a display name: "opsagent <opsagent@example.com>".
    from: opsagent@example.com
    # Every recipient.
    to: [oncall@example.com]
    # Put in front of every subject.
    subject_prefix: "[opsagent]"
```
"""

from __future__ import annotations

import ssl
from datetime import UTC, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from functools import cache
from ipaddress import ip_address
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.durations import Duration
from agent.errors import NotifyError
from agent.notices import Delivery, Notice, NoticeEvent
from agent.notifiers import _secrets, _text
from agent.notifiers.context import NotifierSpec, NotifyContext
from agent.probe_spec import StrictModel
from agent.redaction import Redactor

if TYPE_CHECKING:
    import jinja2

Port = Annotated[int, Field(ge=1, le=65535)]
_TEMPLATES = Path(__file__).parent / "templates"
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _address(value: str) -> str:
    _, addr = parseaddr(value)
    if "@" not in addr:
        raise ValueError(f"invalid email address {value!r}")
    return value


class SmtpSettings(StrictModel):
    """How to reach and log in to the SMTP server."""

    host: str = Field(min_length=1, description="The SMTP server's host name or address.")
    port: Port | None = Field(
        default=None, description="Default 587 with starttls, 465 with tls, 25 with neither."
    )
    starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS.")
    tls: bool = Field(default=False, description="Connect with TLS from the start (SMTPS).")
    username: str | None = Field(default=None, description="Log in with this user.")
    password: SecretStr | None = Field(default=None, description="The login password.")
    password_file: Path | None = Field(
        default=None, description="File holding the password (first line)."
    )
    timeout: Duration = Field(
        default=timedelta(seconds=10), description="Longest wait for each SMTP step."
    )
    validate_certs: bool = Field(
        default=True, description="Verify the server's certificate and host name."
    )
    ca_file: Path | None = Field(
        default=None, description="PEM file of CA certificates to trust instead of the system's."
    )

    @field_validator("password_file")
    @classmethod
    def _readable(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _secrets.readable_secret_file(value, info)

    @field_validator("ca_file")
    @classmethod
    def _ca_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        path = _secrets.anchor(value, info)
        if path is not None and not path.is_file():
            raise ValueError(f"CA file {str(path)!r} does not exist")
        return path

    @model_validator(mode="after")
    def _check(self) -> SmtpSettings:
        if self.tls and "starttls" not in self.model_fields_set:
            # `tls: true` alone means SMTPS; nobody should have to also say starttls: false.
            object.__setattr__(self, "starttls", False)
        if self.tls and self.starttls:
            raise ValueError("set tls (implicit TLS, port 465) or starttls (port 587), not both")
        password = _secrets.inline_or_file(
            self.password, self.password_file, name="password", required=False
        )
        object.__setattr__(self, "password", password)
        if (self.username is None) != (password is None):
            raise ValueError("set both username and password (or password_file), or neither")
        if self.username and not (self.tls or self.starttls) and not _is_loopback(self.host):
            raise ValueError(
                "a username without tls or starttls would send the password in clear text"
            )
        return self

    @property
    def effective_port(self) -> int:
        """The port to connect to, with the default for the TLS mode."""
        if self.port is not None:
            return self.port
        return 465 if self.tls else 587 if self.starttls else 25


class EmailSpec(NotifierSpec):
    """Email through an SMTP server."""

    kind: Literal["email"]
    smtp: SmtpSettings = Field(description="The SMTP server and how to log in.")
    from_: str = Field(alias="from", description="The sender address.")
    to: list[str] = Field(min_length=1, description="Every recipient.")
    subject_prefix: str = Field(default="[opsagent]", description="Put in front of subjects.")

    _check_from = field_validator("from_")(classmethod(lambda cls, v: _address(v)))

    @field_validator("to")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return [_address(item) for item in value]


@cache
def _environment() -> jinja2.Environment:
    import jinja2  # only when an email is rendered: not every agent sends email

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        # Escape HTML (evidence rows are data from the monitored systems), never text.
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2",), disabled_extensions=("txt.j2",), default=True
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def subject(spec: EmailSpec, notice: Notice) -> str:
    """`[opsagent] CRITICAL shop-api failing`."""
    line = _text.headline(notice)
    return f"{spec.subject_prefix} {line}" if spec.subject_prefix else line


def render(notice: Notice, *, subject_line: str) -> tuple[str, str]:
    """The text and HTML bodies for a notice."""
    incident = notice.incident
    columns, rows = _text.evidence_table(incident.evidence)
    values: dict[str, Any] = {
        "subject": subject_line,
        "notice": notice,
        "incident": incident,
        "agent_name": notice.agent_name,
        "event": notice.event.value,
        "emoji": _text.EVENT_EMOJI[notice.event],
        "headline": _text.headline(notice),
        "detail": _text.detail(notice),
        "state": _text.state_label(incident),
        "opened_at": _text.format_time(incident.opened_at),
        "resolved_at": _text.format_time(incident.resolved_at) if incident.resolved_at else None,
        "evidence_caption": _text.evidence_caption(incident.evidence),
        "evidence_text": _text.evidence_text(incident.evidence),
        "evidence_columns": columns,
        "evidence_rows": rows,
        "links": _text.links(incident, None),
    }
    env = _environment()
    text = env.get_template("alert.txt.j2").render(values)
    html = env.get_template("alert.html.j2").render(values)
    return text, html


def build_message(
    spec: EmailSpec, notice: Notice, root_message_id: str | None
) -> tuple[EmailMessage, str]:
    """The email for a notice, threaded under `root_message_id`; returns it and its ID."""
    subject_line = subject(spec, notice)
    text, html = render(notice, subject_line=subject_line)
    domain = parseaddr(spec.from_)[1].rpartition("@")[2] or "opsagent.invalid"
    message_id = make_msgid(domain=domain)
    created = notice.created_at
    message = EmailMessage()
    message["Subject"] = subject_line
    message["From"] = spec.from_
    message["To"] = ", ".join(spec.to)
    message["Date"] = format_datetime(created if created.tzinfo else created.replace(tzinfo=UTC))
    message["Message-ID"] = message_id
    if root_message_id:
        message["In-Reply-To"] = root_message_id
        message["References"] = root_message_id
    # RFC 3834: tells vacation responders and ticket systems not to answer.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Opsagent-Incident"] = str(notice.incident.id)
    message["X-Opsagent-Event"] = notice.event.value
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message, message_id


def _cert_problem(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _as_notify_error(where: str, exc: Exception, redactor: Redactor) -> NotifyError:
    """Which SMTP failures a retry can fix: the network and 4xx answers."""

    import aiosmtplib

    def reason(text: str) -> str:
        return f"{where}: {redactor.redact(text)}"

    cert = _cert_problem(exc)
    if cert is not None:
        return NotifyError(
            reason(f"TLS certificate not trusted: {cert.verify_message}"), permanent=True
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return NotifyError(
            reason(f"authentication failed ({exc.code} {exc.message})"), permanent=True
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = ", ".join(f"{r.recipient} ({r.code} {r.message})" for r in exc.recipients)
        return NotifyError(reason(f"every recipient refused: {refused}"), permanent=True)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return NotifyError(reason(f"timed out: {exc}"))
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
        return NotifyError(reason(str(exc)))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # 4xx is "try again later" in SMTP; 5xx is a refusal.
        return NotifyError(reason(f"{exc.code} {exc.message}"), permanent=exc.code >= 500)
    if isinstance(exc, aiosmtplib.SMTPException):
        # The server lacks what the config asks for (STARTTLS, AUTH): fix the config.
        return NotifyError(reason(str(exc)), permanent=True)
    return NotifyError(reason(f"{type(exc).__name__}: {exc}"))


async def send(spec: EmailSpec, notice: Notice, ctx: NotifyContext) -> Delivery:
    """Send the notice's email; the delivery ref is the incident's first Message-ID."""
    previous = ctx.previous_ref or {}
    root = previous.get("message_id") if notice.event is not NoticeEvent.OPENED else None
    message, message_id = build_message(spec, notice, root)
    refused = await send_email(spec, message, ctx)
    ref = {"message_id": root or message_id}
    if refused:
        # Some recipients got it; sending again would duplicate it for them.
        return Delivery(ref=ref, detail=f"sent {message_id}; refused: {', '.join(refused)}")
    return Delivery(ref=ref, detail=f"sent {message_id}")


async def send_email(spec: EmailSpec, message: EmailMessage, ctx: NotifyContext) -> list[str]:
    """Send any message through the spec's SMTP server (incident notices, reports).

    Returns the recipients the server refused while accepting others; raises
    `NotifyError` (permanent for configuration problems) when nothing was sent.
    """
    smtp = spec.smtp
    password = smtp.password.get_secret_value() if smtp.password else None
    redactor = Redactor([password] if password else [])
    where = f"smtp {smtp.host}:{smtp.effective_port}"
    import aiosmtplib  # only when an email is sent: not every agent sends email

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
    return sorted(errors)


SPEC = EmailSpec
