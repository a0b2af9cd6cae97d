"""`opsagent status`: each configured probe's last state, read from the store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel

from agent.config import Config
from agent.results import utcnow
from agent.store import LatestResult, ProbeCounters, Store
from agent.tables import render_table

if TYPE_CHECKING:
    from agent.api.models import IncidentCounts, OutboxTotals


class ProbeStatus(BaseModel):
    """One line of `opsagent status`."""

    probe: str
    kind: str
    status: str  # ok, fail, error, or "never run"
    detail: str
    latency_ms: float | None
    last_run: datetime | None
    age_s: float | None
    consecutive_failures: int
    runs: int
    missed: int
    overlaps: int
    configured: bool


def collect_status(
    config: Config, now: datetime | None = None, *, builtin: Sequence[tuple[str, str]] = ()
) -> list[ProbeStatus]:
    """Status of every configured probe, plus stored probes no longer in the config.

    `builtin` lists (name, kind) of probes the agent runs itself (its self-check).
    """
    with Store.open(config.agent.store_path, read_only=True) as store:
        latest = store.reader.latest_per_probe()
        counters = store.reader.probe_counters()
    probes = [(p.name, p.kind) for p in config.probes] + list(builtin)
    return build_status(probes, latest, counters, now or utcnow())


def build_status(
    probes: Sequence[tuple[str, str]],
    latest_rows: Sequence[LatestResult],
    counter_rows: Sequence[ProbeCounters],
    now: datetime,
) -> list[ProbeStatus]:
    """The status rows of `probes` (name, kind), then of stored probes not among them."""
    latest = {r.result.probe: r for r in latest_rows}
    counters = {c.probe: c for c in counter_rows}
    out = [
        _status(name, kind, latest.get(name), counters.get(name), now, True)
        for name, kind in probes
    ]
    configured = {name for name, _ in probes}
    out += [
        _status(name, row.result.kind, row, counters.get(name), now, False)
        for name, row in sorted(latest.items())
        if name not in configured
    ]
    return out


def _status(
    name: str,
    kind: str,
    row: LatestResult | None,
    counters: ProbeCounters | None,
    now: datetime,
    configured: bool,
) -> ProbeStatus:
    missed = counters.missed if counters else 0
    overlaps = counters.overlaps if counters else 0
    if row is None:
        return ProbeStatus(
            probe=name, kind=kind, status="never run", detail="", latency_ms=None, last_run=None,
            age_s=None, consecutive_failures=0, runs=0, missed=missed, overlaps=overlaps, configured=configured,
        )  # fmt: skip
    r = row.result
    detail = r.error or "; ".join(r.failed) or r.detail
    return ProbeStatus(
        probe=name,
        kind=kind,
        status=r.status.value,
        detail=detail,
        latency_ms=r.latency_ms,
        last_run=r.started_at,
        age_s=round((now - r.started_at).total_seconds(), 1),
        consecutive_failures=row.consecutive_failures,
        runs=row.runs,
        missed=missed,
        overlaps=overlaps,
        configured=configured,
    )


def render_status(rows: list[ProbeStatus]) -> str:
    """An aligned table for the terminal."""
    columns = [
        "probe",
        "kind",
        "status",
        "latency",
        "age",
        "failures",
        "runs",
        "missed",
        "overlaps",
        "detail",
    ]
    table = [
        [
            s.probe + ("" if s.configured else " (removed)"),
            s.kind,
            s.status.upper() if s.status != "ok" else "ok",
            f"{s.latency_ms:.0f} ms" if s.latency_ms is not None else "",
            _age(s.age_s),
            s.consecutive_failures,
            s.runs,
            s.missed,
            s.overlaps,
            s.detail,
        ]
        for s in rows
    ]
    return render_table(columns, table)


def render_overview(incidents: IncidentCounts, notifications: OutboxTotals | None) -> str:
    """Two lines under the table: incidents by state and severity, and the outbox.

    Dead notifications (failed for good) are called out: nobody received them.
    """
    severities = ", ".join(
        f"{count} {severity}" for severity, count in incidents.by_severity.items() if count
    )
    line = f"incidents: {incidents.open} open, {incidents.acknowledged} acknowledged"
    if severities:
        line += f" ({severities})"
    line += f", {incidents.pending} pending"
    if incidents.suppressed:
        line += f", {incidents.suppressed} silenced"
    plural = "s" * (incidents.silences != 1)
    line += f"; {incidents.silences} silence{plural} in force"
    if notifications is None:
        return line + "\nnotifications: unknown (the store did not answer in time)"
    outbox = f"notifications: {notifications.pending} waiting, {notifications.sent} sent"
    if notifications.dead:
        outbox += (
            f", {notifications.dead} DEAD (failed for good, nobody got them: see the agent's "
            "log, or `opsagent query \"select * from notifications where state = 'dead'\"`)"
        )
    return f"{line}\n{outbox}"


def render_remediation_totals(counts: dict[str, int]) -> str:
    """`remediations: 1 awaiting approval (opsagent remediations ...); last 24h: 3 succeeded`."""
    waiting = counts.get("awaiting_approval", 0)
    recent = ", ".join(
        f"{n} {state}" for state, n in sorted(counts.items()) if state != "awaiting_approval" and n
    )
    line = f"remediations: {waiting} awaiting approval"
    if waiting:
        line += " (opsagent remediations --state awaiting_approval)"
    return f"{line}; last 24h: {recent or 'none'}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"
