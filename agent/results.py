"""What a probe run produces.

A probe returns an `Observation` (what it saw of the target); the runner adds the
timing, evaluates the expectations and returns a `ProbeResult`, the record that is
stored and flows through the pipeline.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    """The outcome of one probe run."""

    OK = "ok"  # target reached, every expectation held
    FAIL = "fail"  # target down, or an expectation failed
    ERROR = "error"  # the probe itself broke (a bug or a timeout); reported, never raised


class Observation(BaseModel):
    """What one probe saw. Returned by every probe's `run()`.

    `values` holds named scalars (numbers, strings, booleans), possibly nested one level
    or more (`{"disk": {"percent": {"/": 41.2}}}`); they are stored and usable in
    expectations. `body` is a parsed document (e.g. an HTTP JSON body) exposed to
    expectations as `json` but not stored. `error` set means the target could not be
    reached: the run fails with that one-line reason.
    """

    model_config = ConfigDict(frozen=True)

    values: dict[str, Any] = Field(default_factory=dict)
    body: Any = None
    detail: str = ""
    error: str | None = None
    latency_ms: float | None = None
    evidence: list[dict[str, Any]] = Field(default_factory=list)


class ProbeResult(BaseModel):
    """One stored probe run."""

    model_config = ConfigDict(frozen=True)

    probe: str
    kind: str
    started_at: datetime
    duration_ms: float
    status: Status
    latency_ms: float | None = None
    values: dict[str, Any] = Field(default_factory=dict)
    detail: str = ""
    error: str | None = None
    failed: list[str] = Field(default_factory=list)
    evidence: list[dict[str, Any]] = Field(default_factory=list)
    scheduled_at: datetime | None = None

    @property
    def ok(self) -> bool:
        """True when the run passed."""
        return self.status is Status.OK

    @property
    def lag_ms(self) -> float | None:
        """How late the run started against its schedule, in milliseconds."""
        if self.scheduled_at is None:
            return None
        return (self.started_at - self.scheduled_at).total_seconds() * 1000


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
