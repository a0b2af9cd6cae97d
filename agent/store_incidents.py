"""The SQL of incidents, their events, silences and the notification outbox.

Functions take a DuckDB connection and run on the store's worker thread through
`Store.run` (or synchronously on a read-only store via `Store.run_read_only`), so the
agent keeps one writer and all SQL stays in the store modules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from agent.incidents.models import Incident, IncidentState, Matcher, Silence, Transition
from agent.notices import AnyNotice, Notice, ReportNotice
from agent.store import _aware, _json, _naive

_INCIDENT_COLUMNS = (
    "id, fingerprint, probe, entity, severity, state, title, summary, pending_since, opened_at, "
    "acknowledged_by, acknowledged_at, ack_comment, ack_expires_at, resolved_at, resolution, "
    'flapping, maintenance, notified, last_notified_at, reminders_sent, escalated_at, labels, "values", '
    "evidence"
)


@dataclass(frozen=True)
class OutboxRow:
    """One notification in the outbox."""

    id: int
    incident_id: int
    target: str
    notice: AnyNotice  # a ReportNotice for a report's email (event 'report')
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None


@dataclass(frozen=True)
class OutboxCounts:
    """How many notifications are waiting, and how many failed for good."""

    pending: int
    dead: int
    sent: int


def _t(value: datetime | None) -> datetime | None:
    return None if value is None else _naive(value)


def _incident_row(i: Incident, now: datetime) -> list[Any]:
    return [
        i.id, i.fingerprint, i.probe, i.entity, i.severity, i.state.value, i.title, i.summary,
        _t(i.pending_since), _t(i.opened_at), i.acknowledged_by, _t(i.acknowledged_at), i.ack_comment,
        _t(i.ack_expires_at), _t(i.resolved_at), i.resolution, i.flapping, i.maintenance, i.notified,
        _t(i.last_notified_at), i.reminders_sent, _t(i.escalated_at), _json(i.labels), _json(i.values),
        _json(i.evidence), _naive(now),
    ]  # fmt: skip


def _incident(row: Sequence[Any]) -> Incident:
    return Incident(
        id=int(row[0]),
        fingerprint=row[1],
        probe=row[2],
        entity=row[3],
        severity=row[4],
        state=IncidentState(row[5]),
        title=row[6],
        summary=row[7],
        pending_since=_aware(row[8]) or row[8],
        opened_at=_aware(row[9]),
        acknowledged_by=row[10],
        acknowledged_at=_aware(row[11]),
        ack_comment=row[12],
        ack_expires_at=_aware(row[13]),
        resolved_at=_aware(row[14]),
        resolution=row[15],
        flapping=bool(row[16]),
        maintenance=bool(row[17]),
        notified=bool(row[18]),
        last_notified_at=_aware(row[19]),
        reminders_sent=int(row[20]),
        escalated_at=_aware(row[21]),
        labels=json.loads(row[22]),
        values=json.loads(row[23]),
        evidence=json.loads(row[24]),
    )


def save(
    con: duckdb.DuckDBPyConnection,
    incidents: Sequence[Incident],
    transitions: Sequence[Transition],
    notices: Sequence[Notice],
    now: datetime,
) -> None:
    """Write changed incidents, their transitions and new notices in one transaction."""
    con.execute("BEGIN TRANSACTION")
    try:
        if incidents:
            ids = [i.id for i in incidents]
            con.execute("DELETE FROM incidents WHERE id IN (SELECT unnest(?))", [ids])
            placeholders = ", ".join("?" * 26)
            con.executemany(
                f"INSERT INTO incidents ({_INCIDENT_COLUMNS}, updated_at) VALUES ({placeholders})",
                [_incident_row(i, now) for i in incidents],
            )
        if transitions:
            con.executemany(
                "INSERT INTO incident_events (incident_id, happened_at, event, actor, reason, from_state, to_state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    [
                        t.incident_id,
                        _naive(t.at),
                        t.event,
                        t.actor,
                        t.reason,
                        t.from_state,
                        t.to_state,
                    ]
                    for t in transitions
                ],
            )
        if notices:
            con.executemany(
                "INSERT INTO notifications (id, incident_id, event, target, notice, state, attempts, "
                "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                [
                    [
                        n.id,
                        n.incident.id,
                        n.event.value,
                        n.target,
                        n.model_dump_json(),
                        _naive(now),
                        _naive(n.created_at),
                    ]
                    for n in notices
                ],
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def next_ids(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    """The next free incident, silence and notification ids."""
    row = con.execute(
        "SELECT (SELECT coalesce(max(id), 0) FROM incidents), (SELECT coalesce(max(id), 0) FROM silences), "
        "(SELECT coalesce(max(id), 0) FROM notifications)"
    ).fetchall()[0]
    return int(row[0]) + 1, int(row[1]) + 1, int(row[2]) + 1


def active(con: duckdb.DuckDBPyConnection) -> list[Incident]:
    """Every incident not resolved yet."""
    rows = con.execute(
        f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE state <> 'resolved' ORDER BY id"
    ).fetchall()
    return [_incident(r) for r in rows]


def listing(
    con: duckdb.DuckDBPyConnection, *, include_resolved: bool = False, limit: int = 200
) -> list[Incident]:
    """Incidents newest first: open ones, or all (cleared blips are never listed)."""
    where = (
        "resolution IS DISTINCT FROM 'cleared'"
        if include_resolved
        else "state IN ('open', 'acknowledged')"
    )
    rows = con.execute(
        f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE {where} ORDER BY id DESC LIMIT ?", [limit]
    ).fetchall()
    return [_incident(r) for r in rows]


def get(con: duckdb.DuckDBPyConnection, incident_id: int) -> Incident | None:
    """One incident by id."""
    rows = con.execute(
        f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = ?", [incident_id]
    ).fetchall()
    return _incident(rows[0]) if rows else None


def events(con: duckdb.DuckDBPyConnection, incident_id: int) -> list[Transition]:
    """The audit trail of one incident, oldest first."""
    rows = con.execute(
        "SELECT incident_id, happened_at, event, actor, reason, from_state, to_state FROM incident_events "
        "WHERE incident_id = ? ORDER BY id",
        [incident_id],
    ).fetchall()
    return [Transition(int(r[0]), _aware(r[1]) or r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


def save_silence(con: duckdb.DuckDBPyConnection, silence: Silence) -> None:
    """Insert or replace a silence."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM silences WHERE id = ?", [silence.id])
        con.execute(
            "INSERT INTO silences VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                silence.id, str(silence.matcher), _naive(silence.starts_at), _naive(silence.ends_at),
                silence.reason, silence.created_by, silence.end_on_resolve, _t(silence.ended_at),
            ],
        )  # fmt: skip
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def silences(con: duckdb.DuckDBPyConnection, *, now: datetime | None = None) -> list[Silence]:
    """All silences, or only those active at `now`."""
    rows = con.execute(
        "SELECT id, matcher, starts_at, ends_at, reason, created_by, end_on_resolve, ended_at FROM silences ORDER BY id"
    ).fetchall()
    out = [
        Silence(
            int(r[0]),
            Matcher.parse(r[1]),
            _aware(r[2]) or r[2],
            _aware(r[3]) or r[3],
            r[4],
            r[5],
            bool(r[6]),
            _aware(r[7]),
        )
        for r in rows
    ]
    return [s for s in out if now is None or s.active_at(now)]


# -- outbox ---------------------------------------------------------------------------


def recover_interrupted(con: duckdb.DuckDBPyConnection) -> int:
    """After a crash, notices caught mid-send go back to pending (sent at least once)."""
    rows = con.execute(
        "UPDATE notifications SET state = 'pending' WHERE state = 'sending' RETURNING id"
    ).fetchall()
    return len(rows)


def due(con: duckdb.DuckDBPyConnection, now: datetime, limit: int = 100) -> list[OutboxRow]:
    """The oldest pending notice of each target, if its time has come.

    Only the oldest per target: a target in back-off must not see its notices reordered
    (an update arriving before the message it updates), while other targets go on.
    """
    rows = con.execute(
        """
        SELECT id, incident_id, target, notice, state, attempts, next_attempt_at, last_error, event
        FROM notifications
        WHERE id IN (SELECT min(id) FROM notifications WHERE state = 'pending' GROUP BY target)
          AND next_attempt_at <= ?
        ORDER BY id LIMIT ?
        """,
        [_naive(now), limit],
    ).fetchall()
    return [
        OutboxRow(
            int(r[0]),
            int(r[1]),
            r[2],
            _notice(r[8], r[3]),
            r[4],
            int(r[5]),
            _aware(r[6]) or r[6],
            r[7],
        )
        for r in rows
    ]


def next_due(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """When the first notice `due()` would return comes due; None when nothing is pending."""
    rows = con.execute(  # fetchall: a half-read result breaks the next appender flush
        """
        SELECT min(next_attempt_at) FROM notifications
        WHERE id IN (SELECT min(id) FROM notifications WHERE state = 'pending' GROUP BY target)
        """
    ).fetchall()
    return _aware(rows[0][0]) if rows else None


def _notice(event: str, text: str) -> AnyNotice:
    """A stored notice: a report's email, or a notice about an incident."""
    if event == "report":
        return ReportNotice.model_validate_json(text)
    return Notice.model_validate_json(text)


def mark_sending(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> None:
    """Claim notices for sending."""
    con.execute(
        "UPDATE notifications SET state = 'sending' WHERE id IN (SELECT unnest(?))", [list(ids)]
    )


def mark_sent(
    con: duckdb.DuckDBPyConnection, notice_id: int, ref: dict[str, str], now: datetime
) -> None:
    """Record a delivery and the notifier's reference to it."""
    con.execute(
        "UPDATE notifications SET state = 'sent', attempts = attempts + 1, sent_at = ?, ref = ?, last_error = NULL "
        "WHERE id = ?",
        [_naive(now), json.dumps(ref), notice_id],
    )


def mark_retry(
    con: duckdb.DuckDBPyConnection, notice_id: int, error: str, next_at: datetime
) -> None:
    """A transient failure: try again at `next_at`."""
    con.execute(
        "UPDATE notifications SET state = 'pending', attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
        "WHERE id = ?",
        [error, _naive(next_at), notice_id],
    )


def mark_dead(con: duckdb.DuckDBPyConnection, notice_id: int, error: str) -> None:
    """A permanent failure: never retried, shown in status."""
    con.execute(
        "UPDATE notifications SET state = 'dead', attempts = attempts + 1, last_error = ? WHERE id = ?",
        [error, notice_id],
    )


def last_ref(
    con: duckdb.DuckDBPyConnection, incident_id: int, target: str
) -> dict[str, str] | None:
    """The reference of the first delivered notice of an incident on a target (the message to update)."""
    rows = con.execute(
        "SELECT ref FROM notifications WHERE incident_id = ? AND target = ? AND state = 'sent' AND ref IS NOT NULL "
        "ORDER BY id LIMIT 1",
        [incident_id, target],
    ).fetchall()
    if not rows:
        return None
    ref: dict[str, str] = json.loads(rows[0][0])
    return ref


def counts(con: duckdb.DuckDBPyConnection) -> OutboxCounts:
    """Outbox depth for status and metrics."""
    row = con.execute(
        "SELECT count(*) FILTER (WHERE state IN ('pending', 'sending')), count(*) FILTER (WHERE state = 'dead'), "
        "count(*) FILTER (WHERE state = 'sent') FROM notifications"
    ).fetchall()[0]
    return OutboxCounts(int(row[0]), int(row[1]), int(row[2]))


def notifications(
    con: duckdb.DuckDBPyConnection, incident_id: int | None = None
) -> list[tuple[Any, ...]]:
    """Notification rows (id, incident_id, event, target, state, attempts, last_error, sent_at)."""
    where, params = (
        ("WHERE incident_id = ?", [incident_id]) if incident_id is not None else ("", [])
    )
    return con.execute(
        f"SELECT id, incident_id, event, target, state, attempts, last_error, sent_at FROM notifications {where} ORDER BY id",
        params,
    ).fetchall()
