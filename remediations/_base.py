"""What every remediation kind shares: the common spec fields, the target, plan and result.

A kind is one module in `remediations/`: a `<Kind>Spec(RemediationSpec)` with
`kind: Literal["<kind>"]`, `async def plan(spec, target, ctx) -> Plan` that computes
what would change without side effects, `async def run(spec, plan, ctx) -> ActionResult`
that makes the change the plan describes, and `SPEC = <Kind>Spec`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from agent.durations import Duration, format_duration, parse_duration
from agent.probe_spec import ProbeSpec, StrictModel, check_name

Mode = Literal["off", "shadow", "approval", "auto"]
_LIMIT = re.compile(r"^\s*(\d+)\s+per\s+(\S+)\s*$")


@pydantic_dataclass(frozen=True)
class AttemptLimit:
    """`3 per 1h`: at most `count` attempts in any `window`."""

    count: int
    window: timedelta

    def __str__(self) -> str:
        return f"{self.count} per {format_duration(self.window)}"


def parse_attempt_limit(value: Any) -> AttemptLimit:
    """`"3 per 1h"` (or an AttemptLimit) as an AttemptLimit; ValueError otherwise."""
    if isinstance(value, AttemptLimit):
        return value
    match = _LIMIT.match(value) if isinstance(value, str) else None
    if match is None or int(match[1]) < 1:
        raise ValueError(f"invalid attempt limit {value!r}: expected e.g. '3 per 1h'")
    try:
        window = parse_duration(match[2])
    except ValueError:
        raise ValueError(
            f"invalid attempt limit {value!r}: the window is a duration, e.g. '3 per 1h'"
        ) from None
    return AttemptLimit(int(match[1]), window)


class RemediationSpec(StrictModel):
    """Fields shared by every remediation kind."""

    name: str = Field(description="Unique remediation name; probes refer to it.")
    kind: str
    mode: Mode = Field(
        default="approval",
        description="off, shadow (plan and record only), approval (a human approves) or auto.",
    )
    max_rows: int = Field(default=100, ge=0, description="Most rows one run may change.")
    max_targets: int = Field(default=10, ge=1, description="Most targets one run may touch.")
    cooldown: Duration = Field(
        default=timedelta(minutes=5), description="Least time between two runs on one target."
    )
    max_attempts: AttemptLimit = Field(
        default=AttemptLimit(3, timedelta(hours=1)),
        description="Attempts allowed on one target per window, e.g. `3 per 1h`.",
    )
    backoff: Duration = Field(
        default=timedelta(seconds=30),
        description="Wait after a failed attempt; doubles with each further failure.",
    )
    breaker_after: int = Field(
        default=3, ge=1, description="Failed verifications that open the circuit for a target."
    )
    approval_expiry: Duration = Field(
        default=timedelta(minutes=15),
        description="An approval not given within this is a rejection.",
    )
    timeout: Duration = Field(default=timedelta(seconds=30), description="Hard limit for one run.")
    verify_after: Duration = Field(
        default=timedelta(seconds=1),
        description="Wait this long after a run before re-running the probe to verify it "
        "(e.g. while a restarted service comes up).",
    )
    description: str = ""

    _check_name = field_validator("name")(classmethod(lambda cls, v: check_name(v)))

    @property
    def acts_on_evidence(self) -> bool:
        """True when each run acts on the incident's evidence rows (its target is the probe)."""
        return False

    @field_validator("max_attempts", mode="before")
    @classmethod
    def _parse_limit(cls, value: Any) -> AttemptLimit:
        return parse_attempt_limit(value)


@dataclass(frozen=True)
class Target:
    """What a run repairs: an incident's probe (and entity) with its evidence."""

    key: str  # the lock / breaker key, e.g. "stock-drift" or "stuck-payments/42"
    incident_id: int | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)
    probe: ProbeSpec | None = None


@dataclass(frozen=True)
class Change:
    """One row a data remediation changes: where, and its values before and after."""

    source: str
    table: str
    key: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """What a run would do, computed without side effects; stored before anything runs."""

    remediation: str
    kind: str
    target: str
    summary: str
    changes: list[Change] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)  # command line, request, statements
    skipped: list[str] = field(default_factory=list)  # evidence left alone, and why
    targets: int = 1

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-able data (for the store)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """A plan read back from the store."""
        fields = dict(data)
        fields["changes"] = [Change(**c) for c in fields.get("changes", [])]
        return cls(**fields)

    @property
    def rows(self) -> int:
        """Rows this plan changes (the blast radius the guard checks)."""
        return max(len(self.changes), int(self.detail.get("rows", 0)))


@dataclass(frozen=True)
class ActionResult:
    """What a run did: success, a one-line detail, captured output, applied changes."""

    ok: bool
    detail: str
    output: str = ""
    changes: list[Change] = field(default_factory=list)
    error: str | None = None


def truncate(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with a marker when cut."""
    return (
        text
        if len(text) <= limit
        else text[:limit] + f"\n... ({len(text) - limit} more characters cut)"
    )
