"""The figures of a report, computed with SQL over the store for a period and the one before.

`collect(con, request)` takes a DuckDB connection (run it on the store's worker thread
with `await store.run(lambda con: collect(con, request))`, or `store.run_read_only(...)`
from the CLI) and returns one `ReportData`, a plain pydantic tree that the renderers in
`reports.render` turn into HTML and text. Nothing here formats for humans.

Definitions (every figure is tested against a hand-computed data set):

- *Availability*: ok results / counted results. A result is not counted (shown as
  excluded) when it falls in a configured maintenance window matching its probe, or
  while an incident of its probe marked `maintenance` was active (pending_since to
  resolved_at).
- *Error budget*: with an SLO target `t` (e.g. 99.9), the budget is `1 - t/100` of the
  counted results; `budget_used` is the failed share over that (1.0 = spent).
- *Incidents*: those opened in the period. Time to detect = first `pending` event (or
  `pending_since`) → `opened`; to acknowledge = `opened` → first `acknowledged`; to
  resolve = `opened` → `resolved`. Mean and p90 (`quantile_cont`) in seconds.
- *Integrity*: the named values (`stuck`, `mismatched`, `amount_at_risk`, ...) of sql and
  reconcile results: latest, peak, and how many runs found something.
- *Noise*: flapping incidents and alerts (notifications created) per probe, and a replay
  of the period's results through `IncidentEngine` with the configured policy and a
  stricter one (failures + 1, `for` doubled) to show how many incidents each would open.
- *Self-healing*: remediation runs by state when the `remediation_runs` table exists.
"""

from __future__ import annotations

import fnmatch
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
from pydantic import BaseModel, ConfigDict, Field

from agent.incidents.engine import IncidentEngine
from agent.incidents.models import Matcher, Policy
from agent.incidents.settings import MaintenanceWindow
from agent.results import ProbeResult, Status
from reports import rollup

DEFAULT_INTEGRITY_VALUES = ("stuck", "mismatched", "amount_at_risk")
INTEGRITY_KINDS = ("sql", "reconcile")
SEVERITIES = ("critical", "high", "warning", "info")
BUCKETS = 24  # points of every sparkline and availability strip


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Window(_Model):
    """A maintenance window as an interval; results of matching probes inside are excluded."""

    start: datetime
    end: datetime
    match: str = "*"  # a glob on the probe name


class Period(_Model):
    """[start, end) in UTC."""

    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def previous(self) -> Period:
        """The period of the same length just before this one."""
        return Period(start=self.start - self.length, end=self.start)


class ReportRequest(_Model):
    """What to compute."""

    period: Period
    windows: tuple[Window, ...] = ()
    groups: dict[str, str] = Field(default_factory=dict)  # probe -> its `group` label
    slo: dict[str, float] = Field(default_factory=dict)  # probe glob -> target percent
    integrity_values: tuple[str, ...] = DEFAULT_INTEGRITY_VALUES
    longest: int = 5
    minutes_saved_per_fix: float = 15.0
    # The replay feeds every result of the period through the engine in Python (~10 us
    # each): above this many it is skipped and the report says so.
    max_replay_results: int = 300_000


class ProbeFigures(_Model):
    probe: str
    group: str | None
    total: int
    ok: int
    excluded: int
    availability: float | None  # percent, None when nothing was counted
    previous_availability: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    slo: float | None
    budget_used: float | None
    strip: tuple[float | None, ...]  # availability per bucket (percent)
    latency: tuple[float | None, ...]  # median latency per bucket (ms)


class GroupFigures(_Model):
    group: str
    probes: int
    total: int
    ok: int
    availability: float | None
    previous_availability: float | None


class Stat(_Model):
    """Mean and p90 of a duration, in seconds; None when there was nothing to measure."""

    count: int
    mean_s: float | None
    p90_s: float | None


class TimelineEvent(_Model):
    at: datetime
    event: str
    actor: str
    reason: str


class IncidentSummary(_Model):
    id: int
    probe: str
    severity: str
    title: str
    opened_at: datetime
    resolved_at: datetime | None
    duration_s: float
    maintenance: bool
    timeline: tuple[TimelineEvent, ...]


class IncidentFigures(_Model):
    total: int
    previous_total: int
    by_severity: dict[str, int]
    detect: Stat
    acknowledge: Stat
    resolve: Stat
    longest: tuple[IncidentSummary, ...]


class IntegrityValue(_Model):
    probe: str
    name: str
    runs: int
    runs_found: int  # runs where the value was > 0
    latest: float | None
    peak: float | None
    series: tuple[float | None, ...]  # peak per bucket


class NoiseProbe(_Model):
    probe: str
    alerts: int
    incidents: int
    flapping: int


class Replay(_Model):
    current: int  # incidents the configured thresholds opened in the replay
    stricter: int  # with failures + 1 and `for` doubled
    per_probe: dict[str, tuple[int, int]]


class NoiseFigures(_Model):
    probes: tuple[NoiseProbe, ...]
    replay: Replay | None
    replay_skipped: str | None = None  # why there is no replay, when it was asked for


class HealingFigures(_Model):
    recorded: bool  # False: no remediation table or no run in the period
    by_state: dict[str, int]
    refused_by_guard: dict[str, int]
    fixed: int
    minutes_saved: float


class ReportData(_Model):
    generated_at: datetime
    period: Period
    previous: Period
    probes: tuple[ProbeFigures, ...]
    groups: tuple[GroupFigures, ...]
    availability: float | None
    previous_availability: float | None
    excluded: int
    latency_exact: bool = True  # False: percentiles from a sample (big periods)
    windows: tuple[Window, ...]
    incidents: IncidentFigures
    integrity: tuple[IntegrityValue, ...]
    noise: NoiseFigures
    healing: HealingFigures


# -- helpers ----------------------------------------------------------------------------


def _naive(moment: datetime) -> datetime:
    """The store keeps naive UTC timestamps."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _percent(ok: int, total: int) -> float | None:
    return None if total == 0 else 100.0 * ok / total


def _slo_for(probe: str, targets: Mapping[str, float]) -> float | None:
    if probe in targets:
        return targets[probe]
    for pattern, target in targets.items():
        if fnmatch.fnmatchcase(probe, pattern):
            return target
    return None


def _exclusion_intervals(
    con: duckdb.DuckDBPyConnection, period: Period, windows: Sequence[Window]
) -> list[tuple[datetime, datetime, str, bool]]:
    """(start, end, probe or glob, is_glob) of every exclusion overlapping `period` (naive UTC)."""
    start, end = _naive(period.start), _naive(period.end)
    intervals: list[tuple[datetime, datetime, str, bool]] = [
        (_naive(w.start), _naive(w.end), w.match, True)
        for w in windows
        if _naive(w.end) > start and _naive(w.start) < end
    ]
    for probe, s, e in con.execute(
        "SELECT probe, pending_since, coalesce(resolved_at, ?::TIMESTAMP) FROM incidents "
        "WHERE maintenance AND pending_since < ? AND coalesce(resolved_at, ?::TIMESTAMP) > ? "
        "ORDER BY pending_since, id",
        [end, end, end, start],
    ).fetchall():
        intervals.append((s, e, probe, False))
    return intervals


def _exclusions(
    con: duckdb.DuckDBPyConnection, period: Period, windows: Sequence[Window]
) -> tuple[str, list[Any]]:
    """A SQL condition over `ts` and `probe` true for excluded results, and its parameters.

    The intervals (configured windows, incidents marked maintenance) are few, so they are
    spelled out as one OR of range tests: a vectorised filter, where a correlated
    subquery per result made the whole report ~6x slower.
    """
    intervals = _exclusion_intervals(con, period, windows)
    if not intervals:
        return "false", []
    parts: list[str] = []
    params: list[Any] = []
    for s, e, probe, glob in intervals:
        parts.append(f"(ts >= ? AND ts < ? AND probe {'GLOB' if glob else '='} ?)")
        params += [s, e, probe]
    return "(" + " OR ".join(parts) + ")", params


# Each result of the period with its bucket and whether it is excluded (maintenance).
_COUNTED = """
WITH c AS (
    SELECT probe, status, latency_ms,
           least(floor(epoch(ts - ?::TIMESTAMP) / ?)::INTEGER, ? - 1) AS bucket,
           {excluded} AS excluded
    FROM results WHERE ts >= ? AND ts < ?
)
"""


def _counted(
    con: duckdb.DuckDBPyConnection, period: Period, windows: Sequence[Window]
) -> tuple[str, list[Any]]:
    start, end = _naive(period.start), _naive(period.end)
    bucket_s = period.length.total_seconds() / BUCKETS
    condition, params = _exclusions(con, period, windows)
    sql = _COUNTED.replace("{excluded}", condition)
    return sql, [start, bucket_s, BUCKETS, *params, start, end]


_PER_PROBE = """
SELECT probe, total, ok, excluded, q[1], q[2], q[3] FROM (
    SELECT probe,
           count(*) FILTER (WHERE NOT excluded) AS total,
           count(*) FILTER (WHERE NOT excluded AND status = 'ok') AS ok,
           count(*) FILTER (WHERE excluded) AS excluded,
           {quantile}(latency_ms, [0.5, 0.95, 0.99]) FILTER (WHERE NOT excluded) AS q
    FROM c GROUP BY probe
) ORDER BY probe
"""

_PER_BUCKET = """
SELECT probe, bucket,
       count(*) FILTER (WHERE NOT excluded) AS total,
       count(*) FILTER (WHERE NOT excluded AND status = 'ok') AS ok,
       {quantile}(latency_ms, 0.5) FILTER (WHERE NOT excluded) AS p50
FROM c GROUP BY probe, bucket
"""


# Above this many results in a period, latency percentiles use `reservoir_quantile` (a
# uniform sample of 8,192 values per group): `quantile_cont` keeps every value of a
# group in memory and cannot spill, so over millions of results it exceeds the agent's
# 64 MB limit (measured: fine at 2.9M results, out of memory at 8.6M; `approx_quantile`
# ran out of memory too).
EXACT_QUANTILE_ROWS = 2_000_000


def _exact_quantiles(con: duckdb.DuckDBPyConnection, period: Period) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM results WHERE ts >= ? AND ts < ?",
        [_naive(period.start), _naive(period.end)],
    ).fetchall()
    return int(rows[0][0]) <= EXACT_QUANTILE_ROWS


def _per_probe(
    con: duckdb.DuckDBPyConnection,
    period: Period,
    windows: Sequence[Window],
    *,
    buckets: bool,
    exact: bool = True,
) -> tuple[dict[str, tuple[Any, ...]], dict[tuple[str, int], tuple[Any, ...]]]:
    counted, params = _counted(con, period, windows)
    quantile = "quantile_cont" if exact else "reservoir_quantile"
    per_probe = _PER_PROBE.replace("{quantile}", quantile)
    rows = {row[0]: row for row in con.execute(counted + per_probe, params).fetchall()}
    per_bucket = (
        {
            (row[0], row[1]): row
            for row in con.execute(
                counted + _PER_BUCKET.replace("{quantile}", quantile), params
            ).fetchall()
        }
        if buckets
        else {}
    )
    return rows, per_bucket


def _stat(row: Sequence[Any]) -> Stat:
    count, mean, p90 = row
    return Stat(count=count, mean_s=mean, p90_s=p90)


# -- sections ---------------------------------------------------------------------------


class Availability(_Model):
    """The availability section's figures."""

    probes: tuple[ProbeFigures, ...]
    groups: tuple[GroupFigures, ...]
    excluded: int
    overall: float | None
    previous_overall: float | None
    latency_exact: bool


def availability(con: duckdb.DuckDBPyConnection, request: ReportRequest) -> Availability:
    """Per probe, per group and overall, with the previous period's figures."""
    period = request.period
    plan = rollup.plan(con, period, _exclusion_intervals(con, period, request.windows))
    if plan is not None:  # a long period: whole hours from the hourly rollups
        exact = False
        current, buckets = rollup.per_probe(
            con, period, plan, _exclusions(con, period, request.windows), buckets=BUCKETS
        )
    else:
        exact = _exact_quantiles(con, request.period)
        current, buckets = _per_probe(
            con, request.period, request.windows, buckets=True, exact=exact
        )
    before = request.period.previous()
    previous_plan = rollup.plan(con, before, _exclusion_intervals(con, before, request.windows))
    if previous_plan is not None:
        previous, _ = rollup.per_probe(
            con,
            before,
            previous_plan,
            _exclusions(con, before, request.windows),
            buckets=BUCKETS,
            latency=False,
        )
    else:  # the previous period's percentiles are not shown: sampled ones are cheaper
        previous, _ = _per_probe(con, before, request.windows, buckets=False, exact=False)
    probes: list[ProbeFigures] = []
    for name in sorted(set(current) | set(previous)):
        _, total, ok, excluded, p50, p95, p99 = current.get(name, (name, 0, 0, 0, None, None, None))
        prev = previous.get(name)
        slo = _slo_for(name, request.slo)
        budget = None
        if slo is not None and total and slo < 100:
            budget = ((total - ok) / total) / (1 - slo / 100)
        strip: list[float | None] = []
        latency: list[float | None] = []
        for index in range(BUCKETS):
            bucket = buckets.get((name, index))
            strip.append(_percent(bucket[3], bucket[2]) if bucket else None)
            latency.append(bucket[4] if bucket else None)
        probes.append(
            ProbeFigures(
                probe=name,
                group=request.groups.get(name),
                total=total,
                ok=ok,
                excluded=excluded,
                availability=_percent(ok, total),
                previous_availability=_percent(prev[2], prev[1]) if prev else None,
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
                slo=slo,
                budget_used=budget,
                strip=tuple(strip),
                latency=tuple(latency),
            )
        )
    groups: dict[str, list[int]] = {}
    for figures in probes:
        if figures.group is None:
            continue
        acc = groups.setdefault(figures.group, [0, 0, 0, 0, 0])
        prev = previous.get(figures.probe)
        acc[0] += 1
        acc[1] += figures.total
        acc[2] += figures.ok
        acc[3] += prev[1] if prev else 0
        acc[4] += prev[2] if prev else 0
    group_figures = tuple(
        GroupFigures(
            group=name,
            probes=n,
            total=total,
            ok=ok,
            availability=_percent(ok, total),
            previous_availability=_percent(prev_ok, prev_total),
        )
        for name, (n, total, ok, prev_total, prev_ok) in sorted(groups.items())
    )
    return Availability(
        probes=tuple(probes),
        groups=group_figures,
        excluded=sum(p.excluded for p in probes),
        overall=_percent(sum(p.ok for p in probes), sum(p.total for p in probes)),
        previous_overall=_percent(
            sum(r[2] for r in previous.values()), sum(r[1] for r in previous.values())
        ),
        latency_exact=exact,
    )


_EVENT_TIMES = """
WITH i AS (
    SELECT id, pending_since, opened_at FROM incidents
    WHERE opened_at >= ? AND opened_at < ?
),
e AS (
    SELECT i.id,
           coalesce(min(happened_at) FILTER (WHERE event = 'pending'), any_value(i.pending_since)) AS pending,
           coalesce(min(happened_at) FILTER (WHERE event = 'opened'), any_value(i.opened_at)) AS opened,
           min(happened_at) FILTER (WHERE event = 'acknowledged') AS acked,
           min(happened_at) FILTER (WHERE event = 'resolved') AS resolved
    FROM i LEFT JOIN incident_events ev ON ev.incident_id = i.id
    GROUP BY i.id
)
SELECT count(*), avg(epoch(opened - pending)), quantile_cont(epoch(opened - pending), 0.9),
       count(acked), avg(epoch(acked - opened)), quantile_cont(epoch(acked - opened), 0.9),
       count(resolved), avg(epoch(resolved - opened)), quantile_cont(epoch(resolved - opened), 0.9)
FROM e
"""


def incidents(con: duckdb.DuckDBPyConnection, request: ReportRequest) -> IncidentFigures:
    """Counts by severity, detect/ack/resolve times, and the longest with their timelines."""
    period, previous = request.period, request.period.previous()
    bounds = [_naive(period.start), _naive(period.end)]
    by_severity = dict.fromkeys(SEVERITIES, 0)
    for severity, count in con.execute(
        "SELECT severity, count(*) FROM incidents WHERE opened_at >= ? AND opened_at < ? "
        "GROUP BY severity",
        bounds,
    ).fetchall():
        by_severity[severity] = count
    (previous_total,) = con.execute(
        "SELECT count(*) FROM incidents WHERE opened_at >= ? AND opened_at < ?",
        [_naive(previous.start), _naive(previous.end)],
    ).fetchall()[0]
    times = con.execute(_EVENT_TIMES, bounds).fetchall()[0]
    # An incident's length inside the report: still open ones count up to the period end.
    longest_rows = con.execute(
        "SELECT id, probe, severity, title, opened_at, resolved_at, maintenance, "
        "epoch(least(coalesce(resolved_at, ?::TIMESTAMP), ?::TIMESTAMP) - opened_at) AS d "
        "FROM incidents WHERE opened_at >= ? AND opened_at < ? ORDER BY d DESC, id LIMIT ?",
        [bounds[1], bounds[1], *bounds, request.longest],
    ).fetchall()
    longest = []
    for row in longest_rows:
        events = con.execute(
            "SELECT happened_at, event, actor, reason FROM incident_events "
            "WHERE incident_id = ? ORDER BY happened_at, id",
            [row[0]],
        ).fetchall()
        longest.append(
            IncidentSummary(
                id=row[0],
                probe=row[1],
                severity=row[2],
                title=row[3],
                opened_at=_aware(row[4]),
                resolved_at=_aware(row[5]) if row[5] else None,
                maintenance=row[6],
                duration_s=row[7],
                timeline=tuple(
                    TimelineEvent(at=_aware(at), event=event, actor=actor, reason=reason)
                    for at, event, actor, reason in events
                ),
            )
        )
    return IncidentFigures(
        total=sum(by_severity.values()),
        previous_total=previous_total,
        by_severity=by_severity,
        detect=_stat(times[0:3]),
        acknowledge=_stat(times[3:6]),
        resolve=_stat(times[6:9]),
        longest=tuple(longest),
    )


_INTEGRITY = f"""
WITH v AS (
    SELECT probe, ts,
           least(floor(epoch(ts - ?::TIMESTAMP) / ?)::INTEGER, ? - 1) AS bucket,
           unnest(range(?)) AS name_index,
           unnest(json_extract("values", ?::VARCHAR[])) AS raw
    FROM results
    WHERE ({{where}}) AND kind IN ({", ".join(f"'{k}'" for k in INTEGRITY_KINDS)})
),
x AS (SELECT probe, ts, bucket, name_index, TRY_CAST(raw AS DOUBLE) AS x FROM v)
SELECT name_index, probe, bucket, count(*), count(*) FILTER (WHERE x > 0), arg_max(x, ts), max(x),
       max(ts)
FROM x WHERE x IS NOT NULL
GROUP BY name_index, probe, bucket
"""


def integrity(con: duckdb.DuckDBPyConnection, request: ReportRequest) -> tuple[IntegrityValue, ...]:
    """The named values of sql and reconcile results: latest, peak, runs that found some.

    One scan for every name (`json_extract` with a list of paths), grouped by name,
    probe and bucket; the totals are summed here. (A scan per name took 20 s over 86M
    results; one scan ~3 s.) Over a long period the whole hours come from the hourly
    rollups (top-level names only; a nested name makes it read `results` throughout).
    """
    names = list(request.integrity_values)
    if not names:
        return ()
    period = request.period
    start, end = _naive(period.start), _naive(period.end)
    bucket_s = period.length.total_seconds() / BUCKETS
    plan = rollup.plan(con, period, []) if all(rollup.top_level(n) for n in names) else None
    where, where_params = (
        rollup.ranges(plan.raw, "ts") if plan is not None else ("ts >= ? AND ts < ?", [start, end])
    )
    rows = con.execute(
        _INTEGRITY.replace("{where}", where),
        [start, bucket_s, BUCKETS, len(names), ["$." + n for n in names], *where_params],
    ).fetchall()
    if plan is not None:
        rows += rollup.integrity(con, period, plan, names, bucket_s, BUCKETS)
    merged: dict[tuple[int, str, int], list[Any]] = {}
    for index, probe, bucket, runs, found, last, peak, last_ts in rows:
        acc = merged.get((index, probe, bucket))
        if acc is None:
            merged[(index, probe, bucket)] = [runs, found, last, peak, last_ts]
            continue
        acc[0] += runs
        acc[1] += found
        if last_ts > acc[4]:
            acc[2], acc[4] = last, last_ts
        acc[3] = max(acc[3], peak)
    groups: dict[tuple[str, str], list[tuple[int, list[Any]]]] = {}
    for (index, probe, bucket), acc in sorted(merged.items()):
        groups.setdefault((probe, names[index]), []).append((bucket, acc))
    out: list[IntegrityValue] = []
    for (probe, name), buckets in groups.items():
        series = {bucket: acc[3] for bucket, acc in buckets}
        out.append(
            IntegrityValue(
                probe=probe,
                name=name,
                runs=sum(acc[0] for _, acc in buckets),
                runs_found=sum(acc[1] for _, acc in buckets),
                latest=buckets[-1][1][2],  # ordered by bucket: the last one holds the latest
                peak=max(acc[3] for _, acc in buckets),
                series=tuple(series.get(i) for i in range(BUCKETS)),
            )
        )
    return tuple(sorted(out, key=lambda v: (v.probe, v.name)))


def _replay_count(
    results: Sequence[ProbeResult], policy_for: Callable[[str], Policy]
) -> Counter[str]:
    counter = iter(range(1, 1 << 62))
    engine = IncidentEngine(policy_for, lambda: next(counter))
    opened: Counter[str] = Counter()
    for result in results:
        for transition in engine.observe(result).transitions:
            if transition.event == "opened":
                opened[result.probe] += 1
    return opened


def stricter(policy: Policy) -> Policy:
    """The replay's stricter thresholds: one more failure, `for` doubled."""
    return replace(
        policy,
        failures=policy.failures + 1,
        for_=policy.for_ * 2 if policy.for_ is not None else None,
    )


def replay(
    con: duckdb.DuckDBPyConnection, period: Period, policy_for: Callable[[str], Policy]
) -> Replay:
    """Re-run the period's results through the engine with the policy and a stricter one."""
    rows = con.execute(
        'SELECT probe, kind, ts, duration_ms, status, latency_ms, "values", failed, evidence '
        "FROM results WHERE ts >= ? AND ts < ? ORDER BY ts, id",
        [_naive(period.start), _naive(period.end)],
    ).fetchall()
    results = [
        ProbeResult(
            probe=probe,
            kind=kind,
            started_at=_aware(ts),
            duration_ms=duration,
            status=Status(status),
            latency_ms=latency,
            values=json.loads(values) if values else {},
            failed=list(failed or []),
            evidence=json.loads(evidence) if evidence else [],
        )
        for probe, kind, ts, duration, status, latency, values, failed, evidence in rows
    ]
    base = _replay_count(results, policy_for)
    strict = _replay_count(results, lambda probe: stricter(policy_for(probe)))
    per_probe = {p: (base[p], strict[p]) for p in sorted(set(base) | set(strict))}
    return Replay(current=sum(base.values()), stricter=sum(strict.values()), per_probe=per_probe)


def noise(
    con: duckdb.DuckDBPyConnection,
    request: ReportRequest,
    policy_for: Callable[[str], Policy] | None,
) -> NoiseFigures:
    """Alerts, incidents and flapping per probe; the stricter-threshold replay."""
    bounds = [_naive(request.period.start), _naive(request.period.end)]
    rows = con.execute(
        """
        WITH inc AS (
            SELECT probe, count(*) AS incidents, count(*) FILTER (WHERE flapping) AS flapping
            FROM incidents WHERE opened_at >= ? AND opened_at < ? GROUP BY probe
        ),
        alerts AS (
            SELECT i.probe, count(*) AS alerts FROM notifications n
            JOIN incidents i ON i.id = n.incident_id
            WHERE n.created_at >= ? AND n.created_at < ? GROUP BY i.probe
        )
        SELECT coalesce(inc.probe, alerts.probe) AS probe, coalesce(alerts, 0),
               coalesce(incidents, 0), coalesce(flapping, 0)
        FROM inc FULL JOIN alerts ON inc.probe = alerts.probe
        ORDER BY 2 DESC, 1
        """,
        [*bounds, *bounds],
    ).fetchall()
    probes = tuple(NoiseProbe(probe=p, alerts=a, incidents=i, flapping=f) for p, a, i, f in rows)
    replayed: Replay | None = None
    skipped: str | None = None
    if policy_for is not None:
        (count,) = con.execute(
            "SELECT count(*) FROM results WHERE ts >= ? AND ts < ?", bounds
        ).fetchall()[0]
        if count > request.max_replay_results:
            skipped = (
                f"{count:,} results are more than the replay's limit of "
                f"{request.max_replay_results:,}"
            )
        else:
            replayed = replay(con, request.period, policy_for)
    return NoiseFigures(
        probes=probes,
        replay=replayed,
        replay_skipped=skipped,
    )


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchall()
    return bool(rows[0][0])


def healing(con: duckdb.DuckDBPyConnection, request: ReportRequest) -> HealingFigures:
    """Remediation runs by state and guard; empty (recorded=False) before they exist.

    Extension point: when `remediation_runs` grows columns for the work done (rows
    repaired, restarts, payments re-queued), sum them here from `result`.
    """
    empty = HealingFigures(
        recorded=False, by_state={}, refused_by_guard={}, fixed=0, minutes_saved=0.0
    )
    if not _has_table(con, "remediation_runs"):
        return empty
    bounds = [_naive(request.period.start), _naive(request.period.end)]
    by_state = dict(
        con.execute(
            "SELECT state, count(*) FROM remediation_runs "
            "WHERE created_at >= ? AND created_at < ? GROUP BY state ORDER BY state",
            bounds,
        ).fetchall()
    )
    if not by_state:
        return empty
    guards = dict(
        con.execute(
            "SELECT guard, count(*) FROM remediation_runs WHERE created_at >= ? AND created_at < ? "
            "AND state = 'refused' AND guard IS NOT NULL GROUP BY guard ORDER BY guard",
            bounds,
        ).fetchall()
    )
    (fixed,) = con.execute(
        "SELECT count(*) FROM remediation_runs WHERE created_at >= ? AND created_at < ? "
        "AND state = 'succeeded' AND verified",
        bounds,
    ).fetchall()[0]
    return HealingFigures(
        recorded=True,
        by_state=by_state,
        refused_by_guard=guards,
        fixed=fixed,
        minutes_saved=fixed * request.minutes_saved_per_fix,
    )


def collect(
    con: duckdb.DuckDBPyConnection,
    request: ReportRequest,
    *,
    now: datetime,
    policy_for: Callable[[str], Policy] | None = None,
) -> ReportData:
    """Every figure of the report for `request.period` and the period before it."""
    figures = availability(con, request)
    return ReportData(
        generated_at=now,
        period=request.period,
        previous=request.period.previous(),
        probes=figures.probes,
        groups=figures.groups,
        availability=figures.overall,
        previous_availability=figures.previous_overall,
        excluded=figures.excluded,
        latency_exact=figures.latency_exact,
        windows=request.windows,
        incidents=incidents(con, request),
        integrity=integrity(con, request),
        noise=noise(con, request, policy_for),
        healing=healing(con, request),
    )


def windows_from(maintenance: Sequence[MaintenanceWindow], period: Period) -> tuple[Window, ...]:
    """The configured (cron) maintenance windows that overlap `period`, as intervals.

    Covers the period before it too, so one list serves both periods of a report.
    """
    from apscheduler.triggers.cron import CronTrigger

    start = period.previous().start
    out: list[Window] = []
    for spec in maintenance:
        trigger = CronTrigger.from_crontab(spec.cron, timezone=spec.timezone)
        fire: datetime | None = trigger.get_next_fire_time(None, start - spec.duration)
        while fire is not None and fire < period.end:
            if fire + spec.duration > start:
                out.append(
                    Window(start=fire, end=fire + spec.duration, match=_probe_glob(spec.match))
                )
            fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return tuple(sorted(out, key=lambda w: (w.start, w.match)))


def _probe_glob(match: str) -> str:
    """The probe-name part of a maintenance matcher (labels and severity are not in `results`)."""
    return Matcher.parse(match).probe
