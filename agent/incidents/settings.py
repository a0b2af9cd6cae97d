"""The `incidents:` and `maintenance:` sections of agent.yaml, and per-probe policy."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import Field, field_validator

from agent.durations import Duration
from agent.incidents.models import Matcher, Policy
from agent.probe_spec import ProbeSpec, StrictModel


class IncidentSettings(StrictModel):
    """Defaults for every probe's incidents; a probe may override the first five."""

    failures: int = Field(
        default=3, ge=1, description="Consecutive failures that open an incident."
    )
    successes: int = Field(default=2, ge=1, description="Consecutive passes that resolve it.")
    notify: list[str] = Field(
        default_factory=list, description="Notifier names told about every incident."
    )
    flap_window: Duration = Field(
        default=timedelta(minutes=10), description="Window for counting flips."
    )
    flap_threshold: int = Field(
        default=6,
        ge=2,
        description="Pass/fail flips within flap_window that mark a probe flapping.",
    )
    remind_every: Duration | None = Field(
        default=None, description="Repeat the alert while open and unacknowledged (off by default)."
    )
    max_reminders: int = Field(
        default=3, ge=0, description="At most this many reminders per incident."
    )
    escalate_after: Duration | None = Field(
        default=None, description="Unacknowledged this long: tell `escalate_to` (once)."
    )
    escalate_to: list[str] = Field(
        default_factory=list, description="Notifier names for escalations."
    )
    tick_every: Duration = Field(
        default=timedelta(seconds=5),
        description="How often time-based rules (reminders, expiry) are checked.",
    )


class MaintenanceWindow(StrictModel):
    """A recurring window (cron + duration) in which notices are suppressed and marked."""

    name: str
    cron: str = Field(
        description='Five-field cron expression of each window\'s start, e.g. "0 3 * * 0".'
    )
    duration: Duration
    match: str = Field(
        default="*", description="Which probes: a glob, plus key=value labels or severity=."
    )
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
        return value

    @field_validator("match")
    @classmethod
    def _valid_match(cls, value: str) -> str:
        Matcher.parse(value)
        return value

    def active_at(self, now: datetime) -> bool:
        """True when a window started at most `duration` ago."""
        from apscheduler.triggers.cron import CronTrigger

        trigger = CronTrigger.from_crontab(self.cron, timezone=self.timezone)
        start: Any = trigger.get_next_fire_time(None, now - self.duration)
        return start is not None and start <= now


def policy_for(spec: ProbeSpec, settings: IncidentSettings) -> Policy:
    """Merge a probe's own incident fields over the global defaults."""
    return Policy(
        severity=spec.severity,
        failures=spec.failures or settings.failures,
        successes=spec.successes or settings.successes,
        for_=spec.for_,
        flap_window=settings.flap_window,
        flap_threshold=settings.flap_threshold,
        notify=tuple(spec.notify if spec.notify is not None else settings.notify),
        remind_every=settings.remind_every,
        max_reminders=settings.max_reminders,
        escalate_after=settings.escalate_after,
        escalate_to=tuple(settings.escalate_to),
        incident_per=spec.incident_per,
        labels=dict(spec.labels),
    )
