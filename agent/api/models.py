"""Request and response bodies of the control API.

The handlers build and parse exactly these models, and `agent.api.openapi` derives the
OpenAPI document from them, so the document cannot drift from the code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from agent.results import ProbeResult
from agent.status import ProbeStatus
from agent.store import StoreStats


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
