"""A small hand-computed data set in a real DuckDB store, shared by the report tests.

Period 2026-11-01 00:00 to 2026-11-02 00:00 UTC (the previous one is 2026-10-31).

- `api` (http, group web): one result an hour, latency = hour x 10 ms; fails at 03:00,
  04:00 (inside the maintenance window 03:00-05:00, excluded) and 10:00. Counted 22,
  ok 21. Previous day: 10 ok results.
- `db` (sql, group web): one result an hour, `stuck` 0 except 3 at 05:00 and 2 at 06:00
  (failures, with `amount_at_risk` 120.5 then 80); 12:00 and 13:00 fall in the
  maintenance incident 3 and are excluded. Counted 22, ok 20.
- incidents opened in the period: 1 api critical (pending 10:00, opened 10:05, ack
  10:15, resolved 11:05); 2 db high, flapping (pending 05:00, opened 05:10, resolved
  07:10); 3 db warning, maintenance (12:00, 12:00, resolved 14:00). Incident 4 opened
  the day before. Notifications: 2 for incident 1, 1 for incident 2.
- remediation runs (when the table exists): succeeded+verified, refused by cooldown,
  ineffective.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from agent.store import Store
from reports.data import Period, Window

DAY = datetime(2026, 11, 1)
PERIOD = Period(start=DAY.replace(tzinfo=UTC), end=(DAY + timedelta(days=1)).replace(tzinfo=UTC))
WINDOWS = (
    Window(
        start=datetime(2026, 11, 1, 3, tzinfo=UTC),
        end=datetime(2026, 11, 1, 5, tzinfo=UTC),
        match="api",
    ),
)
GROUPS = {"api": "web", "db": "web"}


def _at(hour: int, minute: int = 0, day: datetime = DAY) -> datetime:
    return day + timedelta(hours=hour, minutes=minute)


def _result(
    con: duckdb.DuckDBPyConnection,
    ts: datetime,
    probe: str,
    kind: str,
    ok: bool,
    latency: float | None,
    values: dict[str, float],
) -> None:
    con.execute(
        'INSERT INTO results (ts, probe, kind, status, duration_ms, latency_ms, "values", detail) '
        "VALUES (?, ?, ?, ?, 1.0, ?, ?, '')",
        [ts, probe, kind, "ok" if ok else "fail", latency, json.dumps(values)],
    )


def _incident(
    con: duckdb.DuckDBPyConnection,
    incident_id: int,
    probe: str,
    severity: str,
    pending: datetime,
    opened: datetime,
    resolved: datetime | None,
    *,
    flapping: bool = False,
    maintenance: bool = False,
) -> None:
    con.execute(
        "INSERT INTO incidents (id, fingerprint, probe, severity, state, title, summary, "
        "pending_since, opened_at, resolved_at, flapping, maintenance, notified, reminders_sent, "
        "labels, \"values\", evidence, updated_at) VALUES (?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?, "
        "true, 0, '{}', '{}', '[]', ?)",
        [
            incident_id,
            probe,
            probe,
            severity,
            "resolved" if resolved else "open",
            f"{probe} failing",
            pending,
            opened,
            resolved,
            flapping,
            maintenance,
            opened,
        ],
    )


def _event(con: duckdb.DuckDBPyConnection, incident_id: int, at: datetime, event: str) -> None:
    con.execute(
        "INSERT INTO incident_events (incident_id, happened_at, event, actor, reason) "
        "VALUES (?, ?, ?, ?, ?)",
        [incident_id, at, event, "cli:alice" if event == "acknowledged" else "opsagent", event],
    )


def _notification(con: duckdb.DuckDBPyConnection, nid: int, incident_id: int, at: datetime) -> None:
    con.execute(
        "INSERT INTO notifications (id, incident_id, event, target, notice, state, attempts, "
        "next_attempt_at, created_at) VALUES (?, ?, 'opened', 'ops-email', '{}', 'sent', 1, ?, ?)",
        [nid, incident_id, at, at],
    )


def has_remediations(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'remediation_runs'"
    ).fetchall()
    return bool(rows[0][0])


def load(con: duckdb.DuckDBPyConnection) -> None:
    """Write the data set described in the module docstring."""
    for hour in range(24):
        _result(con, _at(hour), "api", "http", hour not in (3, 4, 10), hour * 10.0, {})
        values: dict[str, float] = {"stuck": 0}
        if hour == 5:
            values = {"stuck": 3, "amount_at_risk": 120.5}
        elif hour == 6:
            values = {"stuck": 2, "amount_at_risk": 80}
        _result(con, _at(hour), "db", "sql", hour not in (5, 6), None, values)
    previous = DAY - timedelta(days=1)
    for hour in range(10):
        _result(con, _at(hour, day=previous), "api", "http", True, 5.0, {})
    _incident(con, 1, "api", "critical", _at(10), _at(10, 5), _at(11, 5))
    for minute, event in ((0, "pending"), (5, "opened"), (15, "acknowledged"), (65, "resolved")):
        _event(con, 1, _at(10, minute), event)
    _incident(con, 2, "db", "high", _at(5), _at(5, 10), _at(7, 10), flapping=True)
    for minute, event in ((0, "pending"), (10, "opened"), (130, "resolved")):
        _event(con, 2, _at(5, minute), event)
    _incident(con, 3, "db", "warning", _at(12), _at(12), _at(14), maintenance=True)
    for minute, event in ((0, "pending"), (0, "opened"), (120, "resolved")):
        _event(con, 3, _at(12, minute), event)
    _incident(con, 4, "api", "warning", _at(9, day=previous), _at(9, day=previous), None)
    _notification(con, 1, 1, _at(10, 5))
    _notification(con, 2, 1, _at(11, 5))
    _notification(con, 3, 2, _at(5, 10))
    if has_remediations(con):
        for state, guard, verified in (
            ("succeeded", None, True),
            ("refused", "cooldown", None),
            ("ineffective", None, False),
        ):
            con.execute(
                "INSERT INTO remediation_runs (remediation, kind, target, actor, state, reason, "
                "guard, plan, verified, created_at) VALUES ('restart-api', 'restart', 'api', "
                "'auto', ?, '', ?, '{}', ?, ?)",
                [state, guard, verified, _at(10, 6)],
            )


async def open_store(path: Path) -> Store:
    """A read-write store holding the data set."""
    store = Store.open(path)
    await store.run(load, write=True)
    return store
