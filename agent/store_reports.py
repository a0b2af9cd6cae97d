"""The SQL of generated reports: the `reports` table and their emails in the outbox.

A report is recorded together with one `notifications` row (event `report`) per email
notifier that should receive it, in one transaction: the pending send is in DuckDB
before any SMTP attempt, and the outbox retries it until it is sent or dead. Functions
take a DuckDB connection and run on the store's worker thread (`Store.run`), or on a
read-only store (`Store.run_read_only`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import duckdb

from agent.notices import ReportNotice
from agent.store import _aware, _naive

SendState = Literal["not sent", "pending", "sent", "dead"]


@dataclass(frozen=True)
class ReportDelivery:
    """How the email of a report to one notifier went."""

    target: str
    state: str  # pending | sending | sent | dead
    attempts: int
    last_error: str | None
    sent_at: datetime | None


@dataclass(frozen=True)
class NewReport:
    """What `record` stores about a report just written to disk."""

    name: str
    period_start: datetime
    period_end: datetime
    created_at: datetime
    trigger: str
    subject: str
    html_path: str
    text_path: str
    availability: float | None
    notify: tuple[str, ...]


@dataclass(frozen=True)
class StoredReport:
    """A report in the store, with the delivery of its emails."""

    id: int
    name: str
    period_start: datetime
    period_end: datetime
    created_at: datetime
    trigger: str
    subject: str
    html_path: str
    text_path: str
    availability: float | None
    notify: tuple[str, ...]
    deliveries: tuple[ReportDelivery, ...]

    @property
    def send_state(self) -> SendState:
        """`not sent` (no notifier), `sent` (all), `dead` (one failed for good), else `pending`."""
        states = {d.state for d in self.deliveries}
        if not self.deliveries:
            return "not sent"
        if "dead" in states:
            return "dead"
        return "sent" if states == {"sent"} else "pending"


MakeNotices = Callable[[int, Callable[[], int]], list[ReportNotice]]


def record(
    con: duckdb.DuckDBPyConnection,
    report: NewReport,
    make_notices: MakeNotices,
    notice_ids: Callable[[], int] | None = None,
) -> tuple[StoredReport, list[ReportNotice]]:
    """Insert the report and its pending emails in one transaction.

    `make_notices(report_id, next_id)` builds the emails once the id is known;
    `notice_ids` hands out notification ids (the agent's incident service owns that
    counter); without it (the CLI, agent stopped) they follow the table's largest id.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        (report_id,) = con.execute("SELECT nextval('reports_id_seq')").fetchall()[0]
        if notice_ids is None:
            (top,) = con.execute("SELECT coalesce(max(id), 0) FROM notifications").fetchall()[0]
            counter = iter(range(int(top) + 1, 1 << 62))

            def notice_ids() -> int:
                return next(counter)

        con.execute(
            "INSERT INTO reports (id, name, period_start, period_end, created_at, trigger, subject, "
            "html_path, text_path, availability, notify) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                report_id, report.name, _naive(report.period_start), _naive(report.period_end),
                _naive(report.created_at), report.trigger, report.subject, report.html_path,
                report.text_path, report.availability, list(report.notify),
            ],
        )  # fmt: skip
        notices = make_notices(int(report_id), notice_ids)
        if notices:
            con.executemany(
                "INSERT INTO notifications (id, incident_id, event, target, notice, state, attempts, "
                "next_attempt_at, created_at, report_id) VALUES (?, 0, 'report', ?, ?, 'pending', 0, ?, ?, ?)",
                [
                    [
                        n.id,
                        n.target,
                        n.model_dump_json(),
                        _naive(n.created_at),
                        _naive(n.created_at),
                        n.report_id,
                    ]
                    for n in notices
                ],
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    stored = get(con, int(report_id))
    assert stored is not None
    return stored, notices


_COLUMNS = (
    "id, name, period_start, period_end, created_at, trigger, subject, html_path, text_path, "
    "availability, notify"
)


def _deliveries(
    con: duckdb.DuckDBPyConnection, ids: Sequence[int]
) -> dict[int, list[ReportDelivery]]:
    out: dict[int, list[ReportDelivery]] = {}
    if not ids:
        return out
    for report_id, target, state, attempts, error, sent_at in con.execute(
        "SELECT report_id, target, state, attempts, last_error, sent_at FROM notifications "
        "WHERE report_id IN (SELECT unnest(?)) ORDER BY id",
        [list(ids)],
    ).fetchall():
        out.setdefault(int(report_id), []).append(
            ReportDelivery(target, state, int(attempts), error, _aware(sent_at))
        )
    return out


def _report(row: Sequence[Any], deliveries: list[ReportDelivery]) -> StoredReport:
    return StoredReport(
        id=int(row[0]),
        name=row[1],
        period_start=_aware(row[2]) or row[2],
        period_end=_aware(row[3]) or row[3],
        created_at=_aware(row[4]) or row[4],
        trigger=row[5],
        subject=row[6],
        html_path=row[7],
        text_path=row[8],
        availability=row[9],
        notify=tuple(row[10]),
        deliveries=tuple(deliveries),
    )


def listing(
    con: duckdb.DuckDBPyConnection, *, name: str | None = None, limit: int = 50
) -> list[StoredReport]:
    """Reports newest first (of one name, if given)."""
    where, params = ("WHERE name = ?", [name]) if name is not None else ("", [])
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM reports {where} ORDER BY id DESC LIMIT ?", [*params, limit]
    ).fetchall()
    deliveries = _deliveries(con, [int(r[0]) for r in rows])
    return [_report(r, deliveries.get(int(r[0]), [])) for r in rows]


def get(con: duckdb.DuckDBPyConnection, report_id: int) -> StoredReport | None:
    """One report by id."""
    rows = con.execute(f"SELECT {_COLUMNS} FROM reports WHERE id = ?", [report_id]).fetchall()
    if not rows:
        return None
    return _report(rows[0], _deliveries(con, [report_id]).get(report_id, []))


def pending_sends(con: duckdb.DuckDBPyConnection, report_id: int) -> int:
    """How many emails of a report are not sent yet and not dead."""
    (count,) = con.execute(
        "SELECT count(*) FROM notifications WHERE report_id = ? AND state IN ('pending', 'sending')",
        [report_id],
    ).fetchall()[0]
    return int(count)
