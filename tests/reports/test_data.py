"""Every figure of `reports.data` against the hand-computed data set in `dataset.py`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.incidents.models import Policy
from agent.store import Store
from reports.data import ReportData, ReportRequest, collect, stricter
from tests.reports.dataset import GROUPS, PERIOD, WINDOWS, has_remediations, open_store

NOW = datetime(2026, 11, 2, 0, 5, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(tmp_path / "store.duckdb")
    yield opened
    await opened.close()


def _request() -> ReportRequest:
    return ReportRequest(
        period=PERIOD, windows=WINDOWS, groups=GROUPS, slo={"api": 99.0}, minutes_saved_per_fix=20
    )


async def _collect(store: Store) -> ReportData:
    policy = Policy(failures=2, successes=1)
    return await store.run(
        lambda con: collect(con, _request(), now=NOW, policy_for=lambda _: policy)
    )


async def test_availability_excludes_windows_and_maintenance_incidents(store: Store) -> None:
    data = await _collect(store)
    api, db = data.probes
    assert (api.probe, api.total, api.ok, api.excluded) == ("api", 22, 21, 2)
    assert api.availability == pytest.approx(100 * 21 / 22)
    assert api.previous_availability == 100.0
    assert (db.probe, db.total, db.ok, db.excluded) == ("db", 22, 20, 2)
    assert db.availability == pytest.approx(100 * 20 / 22)
    assert db.previous_availability is None
    assert data.excluded == 4
    assert data.availability == pytest.approx(100 * 41 / 44)
    assert data.previous_availability == 100.0
    (web,) = data.groups
    assert (web.group, web.probes, web.total, web.ok) == ("web", 2, 44, 41)
    assert web.previous_availability == 100.0


async def test_strip_has_one_point_per_hour(store: Store) -> None:
    api = (await _collect(store)).probes[0]
    assert api.strip[3] is None and api.strip[4] is None  # excluded: nothing counted
    assert api.strip[10] == 0.0
    assert api.strip[0] == 100.0
    assert api.latency[7] == 70.0


async def test_latency_percentiles_and_error_budget(store: Store) -> None:
    api, db = (await _collect(store)).probes
    # Counted latencies: 0, 10, 20, 50, 60, ..., 230 (22 values); quantile_cont interpolates.
    assert api.p50_ms == pytest.approx(125.0)
    assert api.p95_ms == pytest.approx(219.5)
    assert api.p99_ms == pytest.approx(227.9)
    assert db.p50_ms is None
    assert api.slo == 99.0
    assert api.budget_used == pytest.approx((1 / 22) / 0.01)
    assert db.slo is None and db.budget_used is None


async def test_incidents_counts_and_times(store: Store) -> None:
    figures = (await _collect(store)).incidents
    assert figures.total == 3
    assert figures.previous_total == 1
    assert figures.by_severity == {"critical": 1, "high": 1, "warning": 1, "info": 0}
    # Detect: 300 s, 600 s, 0 s. Acknowledge: 600 s. Resolve: 3600 s, 7200 s, 7200 s.
    assert (figures.detect.count, figures.detect.mean_s) == (3, 300.0)
    assert figures.detect.p90_s == pytest.approx(540.0)
    assert (figures.acknowledge.count, figures.acknowledge.mean_s) == (1, 600.0)
    assert figures.acknowledge.p90_s == 600.0
    assert (figures.resolve.count, figures.resolve.mean_s) == (3, 6000.0)
    assert figures.resolve.p90_s == pytest.approx(7200.0)


async def test_longest_incidents_with_timelines(store: Store) -> None:
    longest = (await _collect(store)).incidents.longest
    assert [(i.id, i.duration_s) for i in longest] == [(2, 7200.0), (3, 7200.0), (1, 3600.0)]
    assert [e.event for e in longest[2].timeline] == [
        "pending",
        "opened",
        "acknowledged",
        "resolved",
    ]
    assert longest[2].timeline[2].actor == "cli:alice"
    assert longest[1].maintenance


async def test_integrity_values(store: Store) -> None:
    values = {(v.probe, v.name): v for v in (await _collect(store)).integrity}
    assert set(values) == {("db", "stuck"), ("db", "amount_at_risk")}
    stuck = values["db", "stuck"]
    assert (stuck.runs, stuck.runs_found, stuck.latest, stuck.peak) == (24, 2, 0.0, 3.0)
    assert stuck.series[5] == 3.0 and stuck.series[6] == 2.0 and stuck.series[0] == 0.0
    held = values["db", "amount_at_risk"]
    assert (held.runs, held.runs_found, held.latest, held.peak) == (2, 2, 80.0, 120.5)


async def test_noise_and_stricter_replay(store: Store) -> None:
    noise = (await _collect(store)).noise
    assert [(p.probe, p.alerts, p.incidents, p.flapping) for p in noise.probes] == [
        ("api", 2, 1, 0),
        ("db", 1, 2, 1),
    ]
    assert noise.replay is not None
    # api fails 2 in a row (03, 04) and once (10); db 2 in a row (05, 06).
    assert (noise.replay.current, noise.replay.stricter) == (2, 0)
    assert noise.replay.per_probe == {"api": (1, 0), "db": (1, 0)}


def test_stricter_policy() -> None:
    from datetime import timedelta

    policy = stricter(Policy(failures=3, for_=timedelta(minutes=5)))
    assert (policy.failures, policy.for_) == (4, timedelta(minutes=10))
    assert stricter(Policy(failures=1)).for_ is None


async def test_healing_from_remediation_runs(store: Store) -> None:
    healing = (await _collect(store)).healing
    if not await store.run(has_remediations):
        assert not healing.recorded
        return
    assert healing.recorded
    assert healing.by_state == {"ineffective": 1, "refused": 1, "succeeded": 1}
    assert healing.refused_by_guard == {"cooldown": 1}
    assert (healing.fixed, healing.minutes_saved) == (1, 20.0)


async def test_healing_without_remediation_table(store: Store) -> None:
    await store.run(lambda con: con.execute("DROP TABLE IF EXISTS remediation_runs"), write=True)
    healing = (await _collect(store)).healing
    assert not healing.recorded and healing.by_state == {} and healing.minutes_saved == 0


async def test_read_only_store(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    await (await open_store(path)).close()
    with Store.open(path, read_only=True) as reader:
        data = reader.run_read_only(lambda con: collect(con, _request(), now=NOW))
    assert data.noise.replay is None
    assert data.probes[0].total == 22


def test_windows_from_cron_maintenance() -> None:
    from datetime import timedelta

    from agent.incidents.settings import MaintenanceWindow
    from reports.data import windows_from

    nightly = MaintenanceWindow(
        name="nightly", cron="0 3 * * *", duration=timedelta(hours=2), match="probe=api"
    )
    windows = windows_from([nightly], PERIOD)
    assert [(w.start.day, w.start.hour, w.end.hour, w.match) for w in windows] == [
        (31, 3, 5, "api"),
        (1, 3, 5, "api"),
    ]


async def test_big_periods_use_approximate_percentiles(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reports.data

    monkeypatch.setattr(reports.data, "EXACT_QUANTILE_ROWS", 10)
    data = await _collect(store)
    assert not data.latency_exact
    api = data.probes[0]
    assert api.p50_ms == pytest.approx(125.0, abs=15)
    assert (api.total, api.ok) == (22, 21)  # counts stay exact
    from reports.render import render_text

    assert "or a sample of each probe's results" in render_text(data)


async def test_replay_skipped_above_its_limit(store: Store) -> None:
    request = _request().model_copy(update={"max_replay_results": 10})
    policy = Policy(failures=2, successes=1)
    data = await store.run(lambda con: collect(con, request, now=NOW, policy_for=lambda _: policy))
    assert data.noise.replay is None
    assert data.noise.replay_skipped == "48 results are more than the replay's limit of 10"
    from reports.render import render_text

    assert "no threshold replay: 48 results" in render_text(data)
