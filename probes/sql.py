"""Run a read-only SQL query on a source; its one row of named values feeds `expect`.

Values: one per column of the first row, named by the column (`AS stuck`), converted
to plain JSON values: integers stay integers, DECIMAL/NUMERIC become numbers (an
integral one an integer), intervals become seconds, dates and times ISO-8601 strings.
Compute ages in SQL, where the clock and the time zone are the database's own
(`extract(epoch from now() - min(created_at)) AS oldest_age_s`). No rows: no values and
the detail `query returned no rows` (an expectation on a value then fails naming it).
More than one row: the first is used and the detail says so.

`evidence` is a second query whose first `evidence_limit` rows are stored with the
result as `{column: value}` records, e.g. the ids of the payments that are stuck.
`params` are bound to both queries, never formatted into the SQL: write `:name` with a
mapping or `?` with a list, on every kind of database. The queries run in a read-only
session; one that tries to write fails. Together they may take 80% of `timeout` on the
server (a slower one is cancelled there: `statement timeout after 8s`); the rest is
left for connecting.

```yaml
probes:
  - name: stuck-payments
    kind: sql
    # A source from `sources:` of kind postgres, mysql, sqlite or duckdb.
    source: shop
    # One row of named values; each column becomes a value for `expect`.
    query: |
      SELECT count(*) AS stuck,
             coalesce(sum(amount), 0) AS amount_at_risk
      FROM payments
      WHERE status = :status AND created_at < now() - interval '15 minutes'
    # Values bound to :name placeholders (a mapping) or ? placeholders (a list).
    params: {status: pending}
    # Optional: sample rows stored with the result as evidence.
    evidence: |
      SELECT id, order_id, amount FROM payments
      WHERE status = :status AND created_at < now() - interval '15 minutes'
      ORDER BY created_at
    # At most this many evidence rows are kept (1 to 1000).
    evidence_limit: 50
    every: 1m
    timeout: 10s
    expect: [stuck == 0]
    severity: high
```
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from agent.connectors import Rows, SourceError
from agent.errors import ProbeError
from agent.probe_spec import ProbeSpec, RunContext
from agent.results import Observation

SERVER_SHARE = 0.8  # of `timeout`, for the queries; the rest is for connecting and reporting


class SqlSpec(ProbeSpec):
    """A value query, optional evidence query and bound parameters, on one SQL source."""

    kind: Literal["sql"]
    source: str = Field(description="The source to query (postgres, mysql, sqlite or duckdb).")
    query: str = Field(description="Returns one row; each named column becomes a value.")
    params: list[Any] | dict[str, Any] | None = Field(
        default=None,
        description="Bound to `:name` placeholders (a mapping) or `?` placeholders (a list).",
    )
    evidence: str | None = Field(
        default=None, description="A query whose first rows are stored with the result."
    )
    evidence_limit: int = Field(
        default=50, ge=1, le=1000, description="At most this many evidence rows are kept."
    )


async def run(spec: SqlSpec, ctx: RunContext) -> Observation:
    """Run the value query (and the evidence query); a source failure is a failed result."""
    connector = ctx.connector(spec.source)
    if connector.dialect == "redis":
        raise ProbeError(f"source {spec.source!r} is redis, not a SQL database")
    sql = connector
    budget = spec.timeout.total_seconds() * SERVER_SHARE
    started = time.perf_counter()
    try:
        rows = await sql.fetch(spec.query, spec.params, max_rows=1, timeout=budget)
        values = first_row_values(rows)
    except SourceError as exc:
        return Observation(error=str(exc))
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    evidence: list[dict[str, Any]] = []
    evidence_rows: Rows | None = None
    if spec.evidence is not None:
        left = max(0.1, budget - (time.perf_counter() - started))
        try:
            evidence_rows = await sql.fetch(
                spec.evidence, spec.params, max_rows=spec.evidence_limit, timeout=left
            )
        except SourceError as exc:
            # The values were read, but a broken evidence query is a config to fix:
            # fail loudly rather than store a result without its evidence.
            return Observation(values=values, latency_ms=latency_ms, error=f"evidence query: {exc}")
        evidence = [json_record(evidence_rows, row) for row in evidence_rows.rows]
    detail = _detail(rows, values, latency_ms, evidence_rows)
    return Observation(values=values, detail=detail, latency_ms=latency_ms, evidence=evidence)


def first_row_values(rows: Rows) -> dict[str, Any]:
    """The first row as `{column: JSON value}`; SourceError if two columns share a name."""
    seen: set[str] = set()
    for column in rows.columns:
        if column in seen:
            raise SourceError(
                f"the query returns two columns named {column!r}: name each one (AS ...)"
            )
        seen.add(column)
    if not rows.rows:
        return {}
    return json_record(rows, rows.rows[0])


def json_record(rows: Rows, row: tuple[Any, ...]) -> dict[str, Any]:
    """One row as `{column: JSON value}`."""
    return {column: json_value(value) for column, value in zip(rows.columns, row, strict=True)}


def json_value(value: Any) -> Any:
    """A driver value as plain JSON: numbers, strings, booleans, null, lists and objects."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | clock_time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    return str(value)


def _detail(rows: Rows, values: dict[str, Any], latency_ms: float, evidence: Rows | None) -> str:
    if not rows.rows:
        text = "query returned no rows"
    else:
        shown = ", ".join(f"{name}={value}" for name, value in list(values.items())[:5])
        text = f"{shown} ({latency_ms:.0f} ms)"
        if rows.truncated:
            text += "; query returned more than one row, the first is used"
    if evidence is not None:
        more = " or more" if evidence.truncated else ""
        text += f"; evidence: {len(evidence.rows)}{more} rows"
    return text


SPEC = SqlSpec
