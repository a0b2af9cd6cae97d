"""Request and response bodies of the control API.

The handlers build and parse exactly these models, and `agent.api.openapi` derives the
OpenAPI document from them, so the document cannot drift from the code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from agent.incidents.models import Incident, Matcher, Silence, Transition
from agent.notices import Severity
from agent.results import ProbeResult
from agent.status import ProbeStatus
from agent.store import StoreStats
from agent.store_reports import StoredReport


def _json_number(value: Any) -> Any:
    """Only JSON numbers: no "5" strings, no booleans (bodies are otherwise strict)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


# JSON Schema calls 430.0 an integer, so a whole float is accepted as one.
JsonInt = Annotated[int, BeforeValidator(_json_number), Field(strict=False)]


class RequestBody(BaseModel):
    """Base of JSON request bodies: unknown keys and loose types are errors (422)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class QueryParams(BaseModel):
    """Base of query-string models: strings are converted, unknown parameters ignored."""

    model_config = ConfigDict(extra="ignore")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: what went wrong, and the field at fault when there is one."""

    error: str
    field: str | None = None
    problems: list[str] = Field(
        default_factory=list, description="Every problem, when there are several."
    )


class Health(BaseModel):
    """`GET /healthz`: 200 when healthy, 503 with the same body when not."""

    status: Literal["ok", "unhealthy"]
    version: str
    problems: list[str] = Field(default_factory=list)


class AgentInfo(BaseModel):
    """The agent process."""

    name: str
    version: str
    pid: int
    started_at: datetime
    uptime_s: float
    config_path: str | None
    reloads: int = Field(description="Config reloads applied since start.")
    api_url: str | None


class DispatcherTotals(BaseModel):
    """Scheduling totals across probes since the agent started."""

    runs: int
    missed: int
    overlaps: int
    in_flight: int
    lag_p50_ms: float
    lag_p99_ms: float


class StatusResponse(BaseModel):
    """`GET /v1/status`: the rows of `opsagent status` plus the agent's own health."""

    agent: AgentInfo
    probes: list[ProbeStatus]
    store: StoreStats
    dispatcher: DispatcherTotals
    incidents: IncidentCounts
    notifications: OutboxTotals | None = Field(
        description="The outbox; null when the store could not be read just now."
    )
    remediations: dict[str, int] | None = Field(
        default=None,
        description="Remediation runs of the last 24 h by state, and `awaiting_approval` "
        "(however old); null when the store could not be read just now.",
    )


class ProbeInfo(BaseModel):
    """One probe: its schedule, its counters and its last result."""

    name: str
    kind: str
    builtin: bool = Field(description="True for the agent's own `opsagent-self` probe.")
    every_s: float
    timeout_s: float
    severity: str
    description: str
    labels: dict[str, str]
    expect: list[str]
    runs: int
    missed: int
    overlaps: int
    consecutive_failures: int
    last: ProbeResult | None


class ProbesResponse(BaseModel):
    """`GET /v1/probes`."""

    probes: list[ProbeInfo]


class HistoryParams(QueryParams):
    """Query string of `GET /v1/probes/{name}/history`."""

    limit: int = Field(default=100, ge=1, le=10_000, description="Newest results first.")


class HistoryResponse(BaseModel):
    """`GET /v1/probes/{name}/history`."""

    probe: str
    results: list[ProbeResult]


class EventsParams(QueryParams):
    """Query string of `GET /v1/events`."""

    probe: str | None = Field(default=None, description="Only this probe's events.")


class QueryRequest(RequestBody):
    """`POST /v1/query`: one read-only SQL statement over the store."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"sql": "SELECT probe, status, count(*) FROM results GROUP BY ALL"}]
        }
    )

    sql: str = Field(min_length=1, max_length=100_000)
    max_rows: JsonInt = Field(default=1000, ge=1, le=10_000)
    timeout_s: float = Field(
        default=10.0, gt=0, le=60, description="Interrupt the query after this many seconds."
    )


class QueryResponse(BaseModel):
    """The rows of a query; values are JSON (times ISO 8601, decimals as strings)."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = Field(description="More rows matched than max_rows.")
    elapsed_ms: float


class ConfigResponse(BaseModel):
    """`GET /v1/config`: the config in force, secrets replaced by `***`."""

    path: str | None
    config: dict[str, Any]


class ReloadResponse(BaseModel):
    """`POST /v1/reload`: what changed. An invalid file answers 422 with every problem."""

    changed: bool
    added: list[str]
    removed: list[str]
    rescheduled: list[str] = Field(description="Probes whose settings changed.")
    not_applied: list[str] = Field(description="Changes that need a restart, and why.")


class StateChange(BaseModel):
    """A server-sent `state` event: a probe's status changed."""

    probe: str
    previous: str | None
    status: str
    at: datetime
    detail: str


# -- incidents and silences --------------------------------------------------------------

MAX_ID = 2**62  # ids are BIGINTs in the store; larger numbers cannot name anything
MAX_SILENCE = timedelta(days=366)
MAX_ACK_EXPIRY = timedelta(days=366)
# Documented, not enforced by the schema: the validator's own message is clearer.
DURATION_FORMAT: JsonDict = {"pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$"}


def _query_bool(value: Any) -> Any:
    """Only `true` or `false` in a query string (not `1`, `yes`, `on`: the schema says boolean)."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError("must be true or false")


def _path_id(value: Any) -> Any:
    """A path segment of decimal digits only (no sign, no spaces, no `1.0`)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError("must be a whole number, e.g. 12")


QueryBool = Annotated[bool, BeforeValidator(_query_bool)]
PathId = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_path_id)]


def duration_within(text: str, most: timedelta) -> timedelta:
    """Parse a `2h`-style duration that must be positive and at most `most` (ValueError if not)."""
    from agent.durations import format_duration, parse_duration

    try:
        value = parse_duration(text)
    except OverflowError:
        value = most * 2
    if value <= timedelta(0):
        raise ValueError(f"must be longer than 0s, got {text!r}")
    if value > most:
        raise ValueError(f"must be at most {format_duration(most)}, got {text!r}")
    return value


class PathParams(BaseModel):
    """Base of path-parameter models: the segments are strings, converted and checked."""

    model_config = ConfigDict(extra="ignore")


class IncidentPath(PathParams):
    """`{id}` of `/v1/incidents/{id}/...`."""

    id: PathId = Field(description="Incident id (`#12` in notices).")


class SilencePath(PathParams):
    """`{id}` of `/v1/silences/{id}`."""

    id: PathId = Field(description="Silence id.")


class IncidentsParams(QueryParams):
    """Query string of `GET /v1/incidents`."""

    all: QueryBool = Field(
        default=False,
        description="Also pending (failing, below the threshold) and resolved incidents; "
        "blips that cleared before opening are never listed.",
    )
    limit: int = Field(default=200, ge=1, le=10_000, description="Newest incidents first.")


class IncidentInfo(BaseModel):
    """One incident as people see it."""

    id: int
    fingerprint: str
    probe: str
    entity: str | None = Field(
        description="The entity (e.g. a payment id) for per-entity incidents."
    )
    severity: Severity
    state: Literal["pending", "open", "acknowledged", "resolved"]
    title: str
    summary: str = Field(description="The last failure's reason, on one line.")
    pending_since: datetime = Field(description="The first failure.")
    opened_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    ack_comment: str | None
    ack_expires_at: datetime | None
    resolved_at: datetime | None
    resolution: str | None = Field(description="cleared, recovered, auto-remediated or manual.")
    flapping: bool
    maintenance: bool = Field(description="Opened during a maintenance window.")
    suppressed_by: str | None = Field(
        description="Why notices about it are suppressed now (a silence, a maintenance "
        "window); null when they are not."
    )
    reminders_sent: int
    escalated_at: datetime | None
    labels: dict[str, str]
    values: dict[str, Any] = Field(description="The last failing result's values.")
    evidence: list[dict[str, Any]] = Field(description="Rows that show the problem, if any.")

    @classmethod
    def of(cls, incident: Incident, suppressed_by: str | None = None) -> IncidentInfo:
        """The view of an engine/store incident."""
        return cls(
            id=incident.id,
            fingerprint=incident.fingerprint,
            probe=incident.probe,
            entity=incident.entity,
            severity=incident.severity,
            state=incident.state.value,
            title=incident.title,
            summary=incident.summary,
            pending_since=incident.pending_since,
            opened_at=incident.opened_at,
            acknowledged_by=incident.acknowledged_by,
            acknowledged_at=incident.acknowledged_at,
            ack_comment=incident.ack_comment,
            ack_expires_at=incident.ack_expires_at,
            resolved_at=incident.resolved_at,
            resolution=incident.resolution,
            flapping=incident.flapping,
            maintenance=incident.maintenance,
            suppressed_by=suppressed_by if incident.active else None,
            reminders_sent=incident.reminders_sent,
            escalated_at=incident.escalated_at,
            labels=dict(incident.labels),
            values=json_values(incident.values),
            evidence=[json_values(row) for row in incident.evidence],
        )


class IncidentsResponse(BaseModel):
    """`GET /v1/incidents`: newest first."""

    incidents: list[IncidentInfo]


class IncidentEvent(BaseModel):
    """One row of the incident's audit trail."""

    at: datetime
    event: str = Field(
        description="pending, opened, acknowledged, ack_expired, silenced, suppressed, "
        "announced, reminder, escalated, flapping, stable, resolved, cleared, comment."
    )
    actor: str
    reason: str
    from_state: str | None
    to_state: str | None

    @classmethod
    def of(cls, t: Transition) -> IncidentEvent:
        """The view of a stored transition."""
        return cls(
            at=t.at,
            event=t.event,
            actor=t.actor,
            reason=t.reason,
            from_state=t.from_state,
            to_state=t.to_state,
        )


class NotificationInfo(BaseModel):
    """One notice in the outbox: to whom, and how its delivery went."""

    id: int
    event: str
    target: str = Field(description="The notifier's name in agent.yaml.")
    state: Literal["pending", "sending", "sent", "dead"]
    attempts: int
    last_error: str | None
    sent_at: datetime | None

    @classmethod
    def of_row(cls, row: Sequence[Any]) -> NotificationInfo:
        """From `store_incidents.notifications()`: (id, incident_id, event, target, state,
        attempts, last_error, sent_at), times in UTC."""
        sent_at = row[7]
        if isinstance(sent_at, datetime) and sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=UTC)
        return cls(
            id=int(row[0]),
            event=row[2],
            target=row[3],
            state=row[4],
            attempts=int(row[5]),
            last_error=row[6],
            sent_at=sent_at,
        )


class IncidentDetail(BaseModel):
    """`GET /v1/incidents/{id}`: the incident, its timeline and its notices."""

    incident: IncidentInfo
    events: list[IncidentEvent] = Field(description="Oldest first.")
    notifications: list[NotificationInfo] = Field(description="Oldest first.")


class AckRequest(RequestBody):
    """`POST /v1/incidents/{id}/ack`: stop reminders and escalation for an open incident."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"actor": "alice", "comment": "on it", "expires_in": "2h"}]}
    )

    actor: str | None = Field(
        default=None, min_length=1, max_length=200, description='Who acknowledges (default "api").'
    )
    comment: str | None = Field(default=None, max_length=2000)
    expires_in: str | None = Field(
        default=None,
        max_length=40,
        json_schema_extra=DURATION_FORMAT,
        description="The acknowledgement lapses after this long (e.g. `2h`): the incident "
        "is open again and reminders resume.",
    )

    @field_validator("expires_in")
    @classmethod
    def _valid_expiry(cls, value: str | None) -> str | None:
        if value is not None:
            duration_within(value, MAX_ACK_EXPIRY)
        return value

    def expiry(self) -> timedelta | None:
        """`expires_in` as a timedelta."""
        return None if self.expires_in is None else duration_within(self.expires_in, MAX_ACK_EXPIRY)


class ResolveRequest(RequestBody):
    """`POST /v1/incidents/{id}/resolve`: close an incident by hand."""

    actor: str | None = Field(
        default=None, min_length=1, max_length=200, description='Who resolves (default "api").'
    )
    comment: str | None = Field(
        default=None, max_length=2000, description="Kept in the incident's timeline."
    )


class SilencesParams(QueryParams):
    """Query string of `GET /v1/silences`."""

    all: QueryBool = Field(default=False, description="Also silences that have ended.")


class SilenceInfo(BaseModel):
    """A silence: notices of matching incidents are suppressed until `ends_at`."""

    id: int
    matcher: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    end_on_resolve: bool
    ended_at: datetime | None = Field(description="When it ended early (unsilenced, resolved).")
    active: bool

    @classmethod
    def of(cls, silence: Silence, now: datetime) -> SilenceInfo:
        """The view of a silence at `now`."""
        return cls(
            id=silence.id,
            matcher=str(silence.matcher),
            starts_at=silence.starts_at,
            ends_at=silence.ends_at,
            reason=silence.reason,
            created_by=silence.created_by,
            end_on_resolve=silence.end_on_resolve,
            ended_at=silence.ended_at,
            active=silence.active_at(now),
        )


class SilencesResponse(BaseModel):
    """`GET /v1/silences`: oldest first."""

    silences: list[SilenceInfo]


class SilenceRequest(RequestBody):
    """`POST /v1/silences`: suppress notices of matching incidents for a while."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "matcher": "shop-* severity=critical",
                    "duration": "2h",
                    "reason": "deploying the shop",
                    "created_by": "alice",
                }
            ]
        }
    )

    matcher: str = Field(
        min_length=1,
        max_length=500,
        description="A probe name or glob, then optional `key=value` labels and "
        "`severity=critical`: `shop-* team=payments severity=critical`.",
    )
    duration: str = Field(
        max_length=40,
        description="How long, e.g. `30m`, `2h`, `1d` (at most 366d).",
        json_schema_extra=DURATION_FORMAT,
    )
    reason: str = Field(min_length=1, max_length=2000)
    created_by: str | None = Field(
        default=None, min_length=1, max_length=200, description='Default "api".'
    )
    end_on_resolve: bool = Field(
        default=False, description="End the silence when an incident it covers resolves."
    )

    @field_validator("matcher")
    @classmethod
    def _valid_matcher(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a probe or glob, e.g. shop-* or '*'")
        Matcher.parse(value)
        return value

    @field_validator("duration")
    @classmethod
    def _valid_duration(cls, value: str) -> str:
        duration_within(value, MAX_SILENCE)
        return value

    @field_validator("reason")
    @classmethod
    def _valid_reason(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must say why (it is shown with every suppressed notice)")
        return value


class IncidentCounts(BaseModel):
    """Incidents not resolved yet, from the agent's memory."""

    pending: int = Field(description="Failing, below the threshold: nobody told yet.")
    open: int
    acknowledged: int
    by_severity: dict[str, int] = Field(description="Open and acknowledged, per severity.")
    suppressed: int = Field(
        description="Open or acknowledged incidents whose notices are suppressed now."
    )
    silences: int = Field(description="Silences in force now.")

    @classmethod
    def of(
        cls,
        active: Iterable[Incident],
        suppressed_by: Callable[[Incident], str | None],
        silences: int,
    ) -> IncidentCounts:
        """Count the incidents not resolved yet; `suppressed_by` says why one is quiet."""
        states: Counter[str] = Counter()
        by_severity = dict.fromkeys(("critical", "high", "warning", "info"), 0)
        suppressed = 0
        for incident in active:
            states[incident.state.value] += 1
            if incident.state.value in ("open", "acknowledged"):
                by_severity[incident.severity] = by_severity.get(incident.severity, 0) + 1
                suppressed += suppressed_by(incident) is not None
        return cls(
            pending=states["pending"],
            open=states["open"],
            acknowledged=states["acknowledged"],
            by_severity=by_severity,
            suppressed=suppressed,
            silences=silences,
        )


class OutboxTotals(BaseModel):
    """The notification outbox, from the store."""

    pending: int = Field(description="Waiting to be sent (or being sent, or retrying).")
    dead: int = Field(description="Failed for good: never retried. Look at the agent's log.")
    sent: int


def json_values(value: dict[str, Any]) -> dict[str, Any]:
    """A dict that JSON can hold as is (dates, decimals and the like as strings)."""
    import json

    out: dict[str, Any] = json.loads(json.dumps(value, default=str))
    return out


# -- reports -------------------------------------------------------------------------------


class ReportPath(PathParams):
    """`{name}` of `/v1/reports/{name}`."""

    name: str = Field(description="Report name from the config's `reports:`.")


class ReportRunRequest(RequestBody):
    """`POST /v1/reports/{name}`: generate a report now (optionally email it)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"period": "7d", "send": True}]})

    period: str | None = Field(
        default=None,
        max_length=80,
        description="`24h`, `7d`, `30d` (ending now) or `FROM..TO` (ISO dates or date-times, "
        "UTC); default: the report's `period` ending now.",
    )
    send: bool = Field(
        default=False, description="Email it to the report's `notify:` notifiers (via the outbox)."
    )

    @field_validator("period")
    @classmethod
    def _valid_period(cls, value: str | None) -> str | None:
        if value is not None:
            from reports.generate import parse_period

            parse_period(value, datetime.now(UTC))
        return value


class ReportsParams(QueryParams):
    """Query string of `GET /v1/reports`."""

    name: str | None = Field(default=None, description="Only reports of this name.")
    limit: int = Field(default=50, ge=1, le=1000, description="Newest reports first.")


class ReportDeliveryInfo(BaseModel):
    """The email of a report to one notifier, through the outbox."""

    target: str = Field(description="The email notifier's name.")
    state: Literal["pending", "sending", "sent", "dead"]
    attempts: int
    last_error: str | None
    sent_at: datetime | None


class ReportInfo(BaseModel):
    """A generated report: its period, files and the delivery of its emails."""

    id: int
    name: str
    period_start: datetime
    period_end: datetime
    created_at: datetime
    trigger: str = Field(description="schedule, api, cli or demo.")
    subject: str
    html_path: str = Field(description="The self-contained HTML file on the agent's machine.")
    text_path: str
    availability: float | None = Field(description="Overall availability, percent.")
    send_state: Literal["not sent", "pending", "sent", "dead"]
    deliveries: list[ReportDeliveryInfo]

    @classmethod
    def of(cls, report: StoredReport) -> ReportInfo:
        """From a stored report."""
        return cls(
            id=report.id,
            name=report.name,
            period_start=report.period_start,
            period_end=report.period_end,
            created_at=report.created_at,
            trigger=report.trigger,
            subject=report.subject,
            html_path=report.html_path,
            text_path=report.text_path,
            availability=report.availability,
            send_state=report.send_state,
            deliveries=[
                ReportDeliveryInfo(
                    target=d.target,
                    state=d.state,
                    attempts=d.attempts,
                    last_error=d.last_error,
                    sent_at=d.sent_at,
                )
                for d in report.deliveries
            ],
        )


class ScheduledReport(BaseModel):
    """A report configured in `reports:`."""

    name: str
    schedule: str = Field(description="`cron 0 7 * * *` or `every 1d`.")
    period_s: float
    notify: list[str]
    next_run: datetime | None = Field(description="When the agent generates it next.")


class ReportsResponse(BaseModel):
    """`GET /v1/reports`: generated reports, newest first, and the configured ones."""

    reports: list[ReportInfo]
    configured: list[ScheduledReport]


StatusResponse.model_rebuild()
