"""What a notifier is asked to deliver: a `Notice` about one incident event.

Notices are rows in the durable outbox first (see the incidents issue); a sender task
claims them and calls the target's `send(spec, notice, ctx)`. A notifier returns a
`Delivery` whose `ref` (e.g. Slack's channel and message `ts`) is stored and handed back
on the next notice of the same incident, so a message can be updated in place.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["info", "warning", "high", "critical"]


class NoticeEvent(StrEnum):
    """Why a notice is sent."""

    OPENED = "opened"
    ACKNOWLEDGED = "acknowledged"
    SILENCED = "silenced"
    RESOLVED = "resolved"
    REMINDER = "reminder"
    ESCALATED = "escalated"
    FLAPPING = "flapping"
    APPROVAL = "approval"  # a remediation for the incident awaits a human's approval


class IncidentSnapshot(BaseModel):
    """The incident as it is when the notice is created (never contains secrets)."""

    model_config = ConfigDict(frozen=True)

    id: int
    fingerprint: str
    probe: str
    entity: str | None = None  # e.g. a payment id when incidents are per entity
    severity: Severity
    state: Literal["pending", "open", "acknowledged", "resolved"]
    title: str  # "shop-api failing"
    summary: str  # one line: the failed expectation or the error
    opened_at: datetime
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None  # "recovered", "auto-remediated", "manual"
    silenced: bool = False
    flapping: bool = False
    maintenance: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    values: dict[str, Any] = Field(default_factory=dict)  # the last result's values
    evidence: list[dict[str, Any]] = Field(default_factory=list)  # at most 10 rows
    links: dict[str, str] = Field(default_factory=dict)  # text -> URL


class Notice(BaseModel):
    """One notification to one target about one incident event."""

    model_config = ConfigDict(frozen=True)

    id: int
    event: NoticeEvent
    target: str  # the notifier's name in agent.yaml
    agent_name: str
    incident: IncidentSnapshot
    created_at: datetime
    actor: str | None = None  # who acknowledged / silenced ("alice via slack")
    comment: str | None = None
    approval_run: int | None = None  # APPROVAL: the remediation run to approve or reject


class Delivery(BaseModel):
    """What a notifier reports after a successful send."""

    model_config = ConfigDict(frozen=True)

    ref: dict[str, str] = Field(default_factory=dict)  # e.g. {"channel": "C123", "ts": "1700.01"}
    detail: str = ""


class ReportNotice(BaseModel):
    """One report to email to one target: a `notifications` row with event `report`.

    It names the stored files rather than holding them, and carries the Message-ID every
    attempt uses, so a send repeated after a crash is recognisable as the same message.
    """

    model_config = ConfigDict(frozen=True)

    id: int
    event: Literal["report"] = "report"
    target: str  # an email notifier's name
    agent_name: str
    report_id: int
    name: str  # the report's name in agent.yaml
    subject: str
    html_path: str
    text_path: str
    message_id: str
    created_at: datetime


AnyNotice = Notice | ReportNotice
