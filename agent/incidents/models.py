"""The incident records the engine works on and the store keeps."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from agent.notices import IncidentSnapshot, NoticeEvent, Severity


class IncidentState(StrEnum):
    """Where an incident is in its life."""

    PENDING = "pending"  # failing, below the threshold: nobody told yet
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


ACTIVE_STATES = (IncidentState.PENDING, IncidentState.OPEN, IncidentState.ACKNOWLEDGED)


@dataclass
class Incident:
    """One incident. Mutable inside the engine; every change is also a `Transition`."""

    id: int
    fingerprint: str
    probe: str
    entity: str | None
    severity: Severity
    state: IncidentState
    title: str
    summary: str
    pending_since: datetime
    opened_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    ack_comment: str | None = None
    ack_expires_at: datetime | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None  # cleared | recovered | auto-remediated | manual
    flapping: bool = False
    maintenance: bool = False  # opened during a maintenance window
    notified: bool = False  # an opened/flapping notice was created for it
    last_notified_at: datetime | None = None
    reminders_sent: int = 0
    escalated_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    evidence: list[dict[str, Any]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """Not resolved yet."""
        return self.state in ACTIVE_STATES

    def snapshot(self, *, silenced: bool = False) -> IncidentSnapshot:
        """The notifier-facing view of this incident."""
        return IncidentSnapshot(
            id=self.id,
            fingerprint=self.fingerprint,
            probe=self.probe,
            entity=self.entity,
            severity=self.severity,
            state=self.state.value,
            title=self.title,
            summary=self.summary,
            opened_at=self.opened_at or self.pending_since,
            acknowledged_by=self.acknowledged_by,
            acknowledged_at=self.acknowledged_at,
            resolved_at=self.resolved_at,
            resolution=self.resolution,
            silenced=silenced,
            flapping=self.flapping,
            maintenance=self.maintenance,
            labels=self.labels,
            values=self.values,
            evidence=self.evidence[:10],
        )


@dataclass(frozen=True)
class Transition:
    """One row of `incident_events`: what changed, when, who did it and why."""

    incident_id: int
    at: datetime
    event: (
        str  # pending, opened, acknowledged, ack_expired, resolved, cleared, flapping, stable, ...
    )
    actor: str
    reason: str
    from_state: str | None = None
    to_state: str | None = None


@dataclass(frozen=True)
class NoticeRequest:
    """A notice the outbox must deliver to each target."""

    incident_id: int
    event: NoticeEvent
    targets: tuple[str, ...]
    at: datetime
    actor: str | None = None
    comment: str | None = None
    approval_run: int | None = None  # APPROVAL notices: the run awaiting approval


@dataclass(frozen=True)
class Silence:
    """Suppresses notices for matching incidents between `starts_at` and `ends_at`."""

    id: int
    matcher: Matcher
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    end_on_resolve: bool = False
    ended_at: datetime | None = None

    def active_at(self, now: datetime) -> bool:
        """True while it suppresses notices."""
        return self.ended_at is None and self.starts_at <= now < self.ends_at


@dataclass(frozen=True)
class Matcher:
    """Which incidents a silence or maintenance window covers.

    `probe` is a glob (`shop-*`); `labels` must all be equal; `severity`, if set, must match.
    """

    probe: str = "*"
    labels: tuple[tuple[str, str], ...] = ()
    severity: str | None = None

    def matches(self, probe: str, labels: dict[str, str], severity: str) -> bool:
        """True when an incident of this probe, labels and severity is covered."""
        if not fnmatch.fnmatchcase(probe, self.probe):
            return False
        if self.severity is not None and self.severity != severity:
            return False
        return all(labels.get(k) == v for k, v in self.labels)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """`shop-*`, `probe=shop-* severity=critical team=payments` -> Matcher.

        Raises ValueError naming the bad part.
        """
        probe, severity, labels = "*", None, []
        for i, part in enumerate(text.split()):
            if "=" not in part:
                if i > 0:
                    raise ValueError(f"expected key=value, got {part!r}")
                probe = part
                continue
            key, _, value = part.partition("=")
            if not key or not value:
                raise ValueError(f"expected key=value, got {part!r}")
            if key == "probe":
                probe = value
            elif key == "severity":
                if value not in ("info", "warning", "high", "critical"):
                    raise ValueError(
                        f"severity must be info, warning, high or critical, got {value!r}"
                    )
                severity = value
            else:
                labels.append((key, value))
        return cls(probe=probe, labels=tuple(sorted(labels)), severity=severity)

    def __str__(self) -> str:
        parts = [self.probe] + [f"{k}={v}" for k, v in self.labels]
        if self.severity:
            parts.append(f"severity={self.severity}")
        return " ".join(parts)


@dataclass(frozen=True)
class Policy:
    """How one probe's incidents behave (per-probe config over global defaults)."""

    severity: Severity = "warning"
    failures: int = 3
    successes: int = 2
    for_: timedelta | None = None
    flap_window: timedelta = timedelta(minutes=10)
    flap_threshold: int = 6  # result flips within the window that make a probe flapping
    notify: tuple[str, ...] = ()
    remind_every: timedelta | None = None
    max_reminders: int = 3
    escalate_after: timedelta | None = None
    escalate_to: tuple[str, ...] = ()
    incident_per: str | None = None  # an evidence field: one incident per entity
    labels: dict[str, str] = field(default_factory=dict)
