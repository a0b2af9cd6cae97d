"""The hourly rollups: kept up to date, and read by reports with the same figures as `results`.

The hand-computed data set (`dataset.py`) is reported twice, once from `results` only and
once with its whole hours from the rollups (the size threshold lowered to 0): counts,
availability, exclusions, groups and integrity values must be identical; latency
percentiles within the histogram's 5 %.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from agent import store_rollup
from agent.store import Store
from reports import data as report_data
from reports import rollup
from reports.data import Period, ReportRequest, Window
from tests.reports.dataset import GROUPS, PERIOD, WINDOWS, open_store

LATER = datetime(2026, 11, 3, tzinfo=UTC)


def _both(
    con: duckdb.DuckDBPyConnection, request: ReportRequest, monkeypatch: pytest.MonkeyPatch
) -> tuple[
    report_data.Availability, report_data.Availability, tuple[object, ...], tuple[object, ...]
]:
    monkeypatch.setattr(rollup, "MIN_ROLLUP_ROWS", 1 << 62)
    slow = report_data.availability(con, request), report_data.integrity(con, request)
    monkeypatch.setattr(rollup, "MIN_ROLLUP_ROWS", 0)
    assert rollup.plan(con, request.period, []) is not None  # the rollups are read
    fast = report_data.availability(con, request), report_data.integrity(con, request)
    return fast[0], slow[0], fast[1], slow[1]


@pytest.mark.parametrize(
    "period",
    [
        PERIOD,
        # Partial hours at both ends come from `results`.
        Period(start=PERIOD.start + timedelta(minutes=30), end=PERIOD.end - timedelta(minutes=20)),
    ],
    ids=["whole-hours", "partial-edges"],
)
async def test_rollup_figures_equal_the_raw_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, period: Period
) -> None:
    store = await open_store(tmp_path / "store.duckdb")
    try:
        hours = await store.run(lambda con: store_rollup.roll_up(con, LATER), write=True)
        assert hours >= 24 + 24  # the period and the day before
        request = ReportRequest(period=period, windows=WINDOWS, groups=GROUPS, slo={"api": 99.0})
        fast, slow, fast_values, slow_values = await store.run(
            lambda con: _both(con, request, monkeypatch)
        )
    finally:
        await store.close()
    assert [
        (p.probe, p.total, p.ok, p.excluded, p.availability, p.budget_used) for p in fast.probes
    ] == [(p.probe, p.total, p.ok, p.excluded, p.availability, p.budget_used) for p in slow.probes]
    assert [p.previous_availability for p in fast.probes] == [
        p.previous_availability for p in slow.probes
    ]
    assert fast.groups == slow.groups and fast.excluded == slow.excluded == 4
    assert fast.overall == slow.overall and fast.previous_overall == slow.previous_overall
    assert [p.strip for p in fast.probes] == [p.strip for p in slow.probes]
    assert fast_values == slow_values  # latest, peak, runs, series: all the same
    assert fast.latency_exact is False and slow.latency_exact is True
    for f, s in zip(fast.probes, slow.probes, strict=True):
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            exact, estimate = getattr(s, key), getattr(f, key)
            # 22 results an hour apart: the exact value interpolates between neighbours
            # 10 ms apart, the histogram picks the lower one's bucket.
            if exact is None:
                assert estimate is None
            else:
                assert estimate == pytest.approx(exact, rel=0.12), (f.probe, key)


async def test_histogram_percentiles_are_within_five_percent(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "dense.duckdb")
    await store.start()
    start = datetime(2026, 11, 1)

    def fill(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(
            'INSERT INTO results (ts, probe, kind, status, duration_ms, latency_ms, "values", detail) '
            "SELECT ?::TIMESTAMP + to_seconds(i * 10), 'api', 'http', 'ok', 1, "
            "(i * 7919 % 3000) / 3.0 + 1, '{}', '' FROM range(3000) t(i)",
            [start],
        )

    try:
        await store.run(fill, write=True)
        await store.run(lambda con: store_rollup.roll_up(con, LATER), write=True)
        period = Period(
            start=start.replace(tzinfo=UTC), end=start.replace(tzinfo=UTC) + timedelta(hours=9)
        )
        request = ReportRequest(period=period)

        def both(con: duckdb.DuckDBPyConnection) -> tuple[report_data.Availability, ...]:
            exact = report_data.availability(con, request)
            the_plan = rollup.plan(con, period, [], min_rows=0)
            assert the_plan is not None and the_plan.raw == []
            rows, _ = rollup.per_probe(con, period, the_plan, ("false", []), buckets=24)
            return exact, rows  # type: ignore[return-value]

        exact, rows = await store.run(both)
    finally:
        await store.close()
    (probe,) = exact.probes  # type: ignore[attr-defined]
    _, total, ok, excluded, p50, p95, p99 = rows["api"]  # type: ignore[index]
    assert (total, ok, excluded) == (3000, 3000, 0)
    assert p50 == pytest.approx(probe.p50_ms, rel=0.05)
    assert p95 == pytest.approx(probe.p95_ms, rel=0.05)
    assert p99 == pytest.approx(probe.p99_ms, rel=0.05)


async def test_roll_up_is_incremental_and_waits_for_late_results(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "store.duckdb")
    try:
        # 2026-11-02 00:04: the hour 23:00-24:00 ended less than ROLLUP_DELAY ago.
        early = datetime(2026, 11, 2, 0, 4, tzinfo=UTC)
        first = await store.run(lambda con: store_rollup.roll_up(con, early), write=True)
        until = await store.run(store_rollup.rolled_until)
        assert until == datetime(2026, 11, 1, 23, tzinfo=UTC)
        again = await store.run(lambda con: store_rollup.roll_up(con, early), write=True)
        assert again == 0
        later = await store.run(
            lambda con: store_rollup.roll_up(con, early + timedelta(minutes=2)), write=True
        )
        assert later == 1 and first > 24
        totals = await store.run(
            lambda con: con.execute(
                "SELECT (SELECT sum(total) FROM rollup_hourly), (SELECT count(*) FROM results "
                "WHERE ts < '2026-11-02')"
            ).fetchall()
        )
        assert totals[0][0] == totals[0][1]
        pruned = await store.run(
            lambda con: store_rollup.prune(con, datetime(2026, 11, 1, tzinfo=UTC)), write=True
        )
        assert pruned > 0
        left = await store.run(
            lambda con: con.execute("SELECT min(hour) FROM rollup_hourly").fetchall()
        )
        assert left == [(datetime(2026, 11, 1),)]
    finally:
        await store.close()


def test_a_window_sends_its_hours_to_the_raw_ranges() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE meta (key VARCHAR, value VARCHAR, updated_at TIMESTAMP)")
    con.execute("CREATE TABLE rollup_hourly (hour TIMESTAMP, total BIGINT)")
    con.execute("INSERT INTO meta VALUES ('rollup_until', '2026-11-02T00:00:00+00:00', now())")
    con.execute("INSERT INTO rollup_hourly VALUES ('2026-11-01 05:00', 10)")
    window = Window(
        start=datetime(2026, 11, 1, 3, 15, tzinfo=UTC),
        end=datetime(2026, 11, 1, 4, 30, tzinfo=UTC),
    )
    period = Period(
        start=datetime(2026, 11, 1, 0, 30, tzinfo=UTC), end=datetime(2026, 11, 2, 1, tzinfo=UTC)
    )
    exclusions = [(window.start.replace(tzinfo=None), window.end.replace(tzinfo=None), "*", True)]
    the_plan = rollup.plan(con, period, exclusions, min_rows=0)
    assert the_plan is not None
    h = lambda hour, day=1: datetime(2026, 11, day, hour)  # noqa: E731
    assert the_plan.hours == [(h(1), h(3)), (h(5), h(0, 2))]
    assert the_plan.raw == [
        (datetime(2026, 11, 1, 0, 30), h(1)),
        (h(3), h(5)),
        (h(0, 2), h(1, 2)),  # not rolled up yet
    ]
    assert the_plan.rows == 10
