"""The SQL of remediation runs and their audit steps.

Functions take a DuckDB connection and run on the store's worker thread through
`Store.run(fn, write=True)` (reads also through `Store.run_read_only` for the CLI), as
in `agent/store_incidents.py`. Every text that reaches a row (plan, result, reason,
step detail) passes through the caller's `Redactor` here, so no write path can store
a secret by forgetting to mask it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from agent.redaction import Redactor
from agent.store import _aware, _json, _naive

# States in which a run has started acting (they count as attempts).
_STARTED = ("running", "succeeded", "failed", "ineffective", "interrupted")
# States that count as a failed attempt for back-off and the breaker.
_FAILED = ("failed", "ineffective", "interrupted")

_RUN_COLUMNS = (
    "id, remediation, kind, target, incident_id, actor, state, reason, guard, plan, result, "
    "verified, undo_of, undone_by, created_at, started_at, finished_at"
)


@dataclass(frozen=True)
class RunRow:
    """One remediation run as stored."""

    id: int
    remediation: str
    kind: str
    target: str
    incident_id: int | None
    actor: str
    state: str
    reason: str
    guard: str | None
    plan: dict[str, Any]
    result: dict[str, Any] | None
    verified: bool | None
    undo_of: int | None
    undone_by: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class StepRow:
    """One audit step of a run."""

    run_id: int
    happened_at: datetime
    step: str
    actor: str
    detail: str


@dataclass(frozen=True)
class Facts:
    """What the guard needs to know about one remediation on one target."""

    last_run_at: datetime | None
    attempts: tuple[datetime, ...]
    failures_in_a_row: int
    last_failure_at: datetime | None
    running: bool
    runs_last_hour: int


def _masked(value: object, redactor: Redactor) -> str:
    return redactor.redact(_json(value))


def create_run(
    con: duckdb.DuckDBPyConnection,
    *,
    remediation: str,
    kind: str,
    target: str,
    incident_id: int | None,
    actor: str,
    state: str,
    reason: str,
    guard: str | None,
    plan: dict[str, Any],
    now: datetime,
    redactor: Redactor,
    undo_of: int | None = None,
) -> int:
    """Insert a run (and its `planned` step plus one for its state); its id."""
    started = _naive(now) if state == "running" else None
    con.execute("BEGIN TRANSACTION")
    try:
        row = con.execute(
            "INSERT INTO remediation_runs (remediation, kind, target, incident_id, actor, state, reason, "
            "guard, plan, result, verified, undo_of, undone_by, created_at, started_at, finished_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, NULL, ?, ?, NULL) RETURNING id",
            [remediation, kind, target, incident_id, actor, state, redactor.redact(reason), guard,
             _masked(plan, redactor), undo_of, _naive(now), started],
        ).fetchall()  # fmt: skip
        run_id = int(row[0][0])
        summary = str(plan.get("summary", ""))
        _step(con, run_id, remediation, target, now, "planned", actor, summary, redactor)
        step = {"running": "approved"}.get(state, state)
        _step(con, run_id, remediation, target, now, step, actor, reason, redactor)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return run_id


def add_step(
    con: duckdb.DuckDBPyConnection,
    run_id: int,
    step: str,
    actor: str,
    detail: str,
    now: datetime,
    *,
    redactor: Redactor,
) -> None:
    """Append an audit step to run `run_id`."""
    found = con.execute(
        "SELECT remediation, target FROM remediation_runs WHERE id = ?", [run_id]
    ).fetchall()
    if not found:
        raise KeyError(f"no remediation run {run_id}")
    _step(con, run_id, found[0][0], found[0][1], now, step, actor, detail, redactor)


def _step(
    con: duckdb.DuckDBPyConnection,
    run_id: int,
    remediation: str,
    target: str,
    now: datetime,
    step: str,
    actor: str,
    detail: str,
    redactor: Redactor,
) -> None:
    con.execute(
        "INSERT INTO remediation_steps (run_id, remediation, target, happened_at, step, actor, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [run_id, remediation, target, _naive(now), step, actor, redactor.redact(detail)],
    )


def set_state(
    con: duckdb.DuckDBPyConnection,
    run_id: int,
    state: str,
    *,
    now: datetime,
    step: str,
    actor: str,
    reason: str,
    redactor: Redactor,
    result: dict[str, Any] | None = None,
    verified: bool | None = None,
) -> None:
    """Move a run to `state` (with its step); `running` sets started_at, ends set finished_at."""
    sets = ["state = ?", "reason = ?"]
    params: list[Any] = [state, redactor.redact(reason)]
    if state == "running":
        sets.append("started_at = ?")
        params.append(_naive(now))
    if state in ("succeeded", "failed", "rejected", "interrupted", "refused"):
        sets.append("finished_at = ?")
        params.append(_naive(now))
    if result is not None:
        sets.append("result = ?")
        params.append(_masked(result, redactor))
    if verified is not None:
        sets.append("verified = ?")
        params.append(verified)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"UPDATE remediation_runs SET {', '.join(sets)} WHERE id = ?", [*params, run_id]
        )
        add_step(con, run_id, step, actor, reason, now, redactor=redactor)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def mark_undone(con: duckdb.DuckDBPyConnection, run_id: int, undone_by: int) -> None:
    """Link a run to the run that undid it."""
    con.execute("UPDATE remediation_runs SET undone_by = ? WHERE id = ?", [undone_by, run_id])


def get_run(con: duckdb.DuckDBPyConnection, run_id: int) -> RunRow | None:
    """One run, or None."""
    rows = con.execute(
        f"SELECT {_RUN_COLUMNS} FROM remediation_runs WHERE id = ?", [run_id]
    ).fetchall()
    return _run(rows[0]) if rows else None


def list_runs(
    con: duckdb.DuckDBPyConnection,
    *,
    limit: int = 100,
    state: str | None = None,
    incident_id: int | None = None,
) -> list[RunRow]:
    """The latest runs, newest first; only those in `state` / of `incident_id` when given."""
    where: list[str] = []
    args: list[Any] = []
    if state is not None:
        where.append("state = ?")
        args.append(state)
    if incident_id is not None:
        where.append("incident_id = ?")
        args.append(incident_id)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    rows = con.execute(
        f"SELECT {_RUN_COLUMNS} FROM remediation_runs {clause}ORDER BY id DESC LIMIT ?",
        [*args, limit],
    ).fetchall()
    return [_run(r) for r in rows]


def steps(con: duckdb.DuckDBPyConnection, run_id: int) -> list[StepRow]:
    """A run's audit steps, oldest first."""
    rows = con.execute(
        "SELECT run_id, happened_at, step, actor, detail FROM remediation_steps "
        "WHERE run_id = ? ORDER BY id",
        [run_id],
    ).fetchall()
    return [StepRow(int(r[0]), r[1].replace(tzinfo=UTC), r[2], r[3], r[4]) for r in rows]


def facts(
    con: duckdb.DuckDBPyConnection, remediation: str, target: str, now: datetime, window: timedelta
) -> Facts:
    """The guard's facts for `remediation` on `target` at `now` (attempts within `window`)."""
    reset = con.execute(
        "SELECT max(happened_at) FROM remediation_steps WHERE remediation = ? AND target = ? "
        "AND step = 'breaker_reset'",
        [remediation, target],
    ).fetchall()[0][0]
    started = con.execute(
        "SELECT started_at, state, verified FROM remediation_runs WHERE remediation = ? AND target = ? "
        f"AND state IN {_STARTED} AND started_at IS NOT NULL ORDER BY started_at DESC, id DESC",
        [remediation, target],
    ).fetchall()
    in_a_row, last_failure = 0, None
    for at, state, verified in started:
        if reset is not None and at <= reset:
            break
        failed = state in _FAILED or verified is False
        if state == "running":
            continue
        if not failed:
            break
        in_a_row += 1
        last_failure = last_failure or at
    hour = con.execute(
        f"SELECT count(*) FROM remediation_runs WHERE state IN {_STARTED} AND started_at > ?",
        [_naive(now - timedelta(hours=1))],
    ).fetchall()[0][0]
    since = _naive(now - window)
    return Facts(
        last_run_at=_aware(started[0][0]) if started else None,
        attempts=tuple(a for a in (_aware(r[0]) for r in started if r[0] > since) if a is not None),
        failures_in_a_row=in_a_row,
        last_failure_at=_aware(last_failure),
        running=any(state == "running" for _, state, _ in started),
        runs_last_hour=int(hour),
    )


def totals(con: duckdb.DuckDBPyConnection, since: datetime | None = None) -> dict[str, int]:
    """Runs per state (created since `since`, if given), plus `awaiting_approval` whenever
    created."""
    where = "WHERE created_at >= ? " if since is not None else ""
    rows = con.execute(
        f"SELECT state, count(*) FROM remediation_runs {where}GROUP BY state ORDER BY state",
        [_naive(since)] if since is not None else [],
    ).fetchall()
    counts = {str(state): int(n) for state, n in rows}
    waiting = con.execute(
        "SELECT count(*) FROM remediation_runs WHERE state = 'awaiting_approval'"
    ).fetchall()[0][0]
    counts["awaiting_approval"] = int(waiting)
    return counts


def interrupt_running(
    con: duckdb.DuckDBPyConnection, now: datetime, *, redactor: Redactor
) -> list[RunRow]:
    """At start-up: runs left `running` by a crash become `interrupted` (never re-run blindly)."""
    rows = con.execute(
        f"SELECT {_RUN_COLUMNS} FROM remediation_runs WHERE state = 'running'"
    ).fetchall()
    for row in rows:
        set_state(
            con, int(row[0]), "interrupted", now=now, step="interrupted", actor="agent",
            reason="the agent stopped while this run was in progress", redactor=redactor,
        )  # fmt: skip
    return [_run(r) for r in rows]


def _run(row: Sequence[Any]) -> RunRow:
    return RunRow(
        id=int(row[0]),
        remediation=row[1],
        kind=row[2],
        target=row[3],
        incident_id=None if row[4] is None else int(row[4]),
        actor=row[5],
        state=row[6],
        reason=row[7],
        guard=row[8],
        plan=json.loads(row[9]),
        result=None if row[10] is None else json.loads(row[10]),
        verified=row[11],
        undo_of=row[12],
        undone_by=row[13],
        created_at=row[14].replace(tzinfo=UTC),
        started_at=_aware(row[15]),
        finished_at=_aware(row[16]),
    )
