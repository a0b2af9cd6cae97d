"""The DuckDB store: round trips, batching, draining, locking, migrations, read-only
queries, retention and write failures, all against real DuckDB files in `tmp_path`.

Timing is only ever checked with generous liveness deadlines; speed is in
`bench/store_ingest.py`.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest

import agent.store
from agent.errors import StoreError
from agent.results import ProbeResult, Status, utcnow
from agent.store import ProbeCounters, Store
from agent.store_schema import MIGRATIONS, SCHEMA_VERSION, Migration

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 10.0  # liveness only: something that should take ~0.25 s


def result(
    probe: str = "shop-api",
    status: Status = Status.OK,
    *,
    started_at: datetime | None = None,
    **fields: Any,
) -> ProbeResult:
    return ProbeResult(
        probe=probe,
        kind=fields.pop("kind", "http"),
        started_at=started_at or utcnow(),
        duration_ms=fields.pop("duration_ms", 12.5),
        status=status,
        **fields,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "opsagent.duckdb"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    store = Store.open(db_path)
    await store.start()
    yield store
    await store.close()


def size(path: Path) -> int:
    return path.stat().st_size


def listdir(path: Path) -> list[Path]:
    return sorted(path.iterdir())


async def eventually(check: Any, what: str) -> None:
    """Poll an async predicate until it holds or the (generous) deadline passes."""
    deadline = time.monotonic() + DEADLINE_S
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE_S} s: {what}")
        await asyncio.sleep(0.02)


# -- round trip ----------------------------------------------------------------------------


async def test_round_trip_keeps_every_field(store: Store) -> None:
    berlin = timezone(timedelta(hours=2))
    original = result(
        "stuck-payments",
        Status.FAIL,
        kind="sql",
        started_at=datetime(2025, 3, 1, 14, 30, 5, 123456, tzinfo=berlin),
        scheduled_at=datetime(2025, 3, 1, 12, 30, 5, 100000, tzinfo=UTC),
        duration_ms=41.25,
        latency_ms=40.5,
        values={
            "stuck": 3,
            "amount_at_risk": 129.9,
            "ok": False,
            "label": "naïve ünïcode ✓",
            "missing": None,
            "disk": {"percent": {"root": 41.2, "var": 88.0}},
        },
        detail="3 payments pending for more than 15 minutes",
        error=None,
        failed=["stuck == 0"],
        evidence=[
            {"id": 7, "order_id": "A-1", "amount": 42.5},
            {"id": 9, "order_id": "A-2", "amount": 87.4, "tags": ["vip", "eu"]},
        ],
    )
    store.append(original)
    await store.flush()

    [stored] = await store.history("stuck-payments")
    assert stored == original
    assert stored.started_at.tzinfo is UTC
    assert stored.started_at == datetime(2025, 3, 1, 12, 30, 5, 123456, tzinfo=UTC)
    assert stored.lag_ms == pytest.approx(23.456)

    # What SQL over the store sees: UTC wall time, queryable JSON, a list of strings.
    answer = await store.query(
        "SELECT ts, json_extract_string(\"values\", '$.disk.percent.var'), failed, lag_ms "
        "FROM results"
    )
    [(ts, var, failed, lag_ms)] = answer.rows
    assert (ts, var, failed) == (datetime(2025, 3, 1, 12, 30, 5, 123456), "88.0", ["stuck == 0"])
    assert lag_ms == pytest.approx(23.456)


async def test_round_trip_of_a_minimal_result(store: Store) -> None:
    original = result(error="connect refused 127.0.0.1:8080", status=Status.ERROR)
    store.append(original)
    await store.flush()
    assert await store.history("shop-api") == [original]


async def test_values_json_cannot_hold_are_stored_as_text(store: Store) -> None:
    moment = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    store.append(result(evidence=[{"created_at": moment}], detail="bad byte \udcff here"))
    await store.flush()
    [stored] = await store.history("shop-api")
    assert stored.evidence == [{"created_at": "2025-01-02T03:04:05Z"}]
    assert stored.detail == "bad byte ? here"  # a lone surrogate would poison the batch
    assert store.stats().rows_rejected == 0


async def test_times_are_utc_in_sql_too(store: Store) -> None:
    started = datetime(2025, 7, 1, 9, 0, tzinfo=timezone(timedelta(hours=-4)))
    store.append(result(started_at=started))
    await store.flush()
    [stored] = await store.history("shop-api")
    assert stored.started_at == started
    # Casts in SQL (reports) agree with the stored UTC, whatever the host's time zone.
    answer = await store.query(
        "SELECT ts, current_setting('TimeZone'), now()::TIMESTAMP - ?::TIMESTAMP FROM results",
        [utcnow().replace(tzinfo=None)],
    )
    [(ts, zone, skew)] = answer.rows
    assert (ts, zone) == (datetime(2025, 7, 1, 13, 0), "UTC")
    assert abs(skew) < timedelta(minutes=5)


# -- batching, flushing, draining --------------------------------------------------------


async def test_many_appends_make_few_batches(db_path: Path) -> None:
    store = Store.open(db_path, batch_size=100)
    await store.start()
    for i in range(1000):
        store.append(result(f"probe-{i % 7}"))
    await store.flush()
    stats = store.stats()
    await store.close()
    assert stats.rows_written == 1000
    assert stats.batches <= 12
    assert stats.last_batch_size <= 100
    assert stats.queue_depth == 0
    assert stats.last_error is None


async def test_a_single_append_reaches_disk_without_flush(store: Store) -> None:
    store.append(result())

    async def on_disk() -> bool:
        return await store.count_results() == 1

    await eventually(on_disk, "one appended result written by the flush_interval timer")
    assert store.stats().batches == 1


async def test_flush_with_nothing_queued_returns(store: Store) -> None:
    await store.flush()
    assert store.stats().rows_written == 0


async def test_close_drains_everything(db_path: Path) -> None:
    store = Store.open(db_path)
    await store.start()
    for i in range(10_000):
        store.append(result(f"probe-{i % 10}", values={"i": i}))
    await store.close()

    with Store.open(db_path, read_only=True) as reopened:
        assert reopened.reader.count_results() == 10_000
        assert reopened.reader.count_results("probe-3") == 1_000
        assert reopened.reader.history("probe-9", limit=1)[0].values == {"i": 9_999}


async def test_results_appended_before_start_are_written_at_close(db_path: Path) -> None:
    store = Store.open(db_path)
    store.append(result())
    await store.close()
    with Store.open(db_path, read_only=True) as reopened:
        assert reopened.reader.count_results() == 1


async def test_a_closed_store_refuses_work(db_path: Path) -> None:
    store = Store.open(db_path)
    await store.start()
    await store.close()
    await store.close()  # harmless twice
    with pytest.raises(StoreError, match="closed"):
        store.append(result())
    with pytest.raises(StoreError, match="closed"):
        await store.count_results()


async def test_stats_report_a_live_writer(store: Store) -> None:
    assert store.stats().writer_alive
    store.append(result())
    await store.flush()
    stats = store.stats()
    assert (stats.rows_written, stats.batches, stats.last_batch_size) == (1, 1, 1)
    assert stats.max_flush_ms >= stats.last_flush_ms > 0


# -- one owner ---------------------------------------------------------------------------


def _open_in_child(path: Path, read_only: bool) -> str:
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from agent.errors import StoreError
        from agent.store import ProbeCounters, Store
        try:
            Store.open(Path({str(path)!r}), read_only={read_only})
        except StoreError as exc:
            print(exc)
        else:
            print("opened")
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    return child.stdout.strip()


@pytest.mark.parametrize("read_only", [False, True], ids=["read-write", "read-only"])
async def test_a_second_process_cannot_open_a_held_store(
    store: Store, db_path: Path, read_only: bool
) -> None:
    message = await asyncio.to_thread(_open_in_child, db_path, read_only)
    assert message == (
        f"the store {db_path} is in use by another process "
        "(is the agent running? use the control API)"
    )


async def test_the_file_is_free_again_after_close(db_path: Path) -> None:
    store = Store.open(db_path)
    await store.close()
    assert await asyncio.to_thread(_open_in_child, db_path, False) == "opened"


async def test_a_second_writer_in_the_same_process_is_refused(store: Store, db_path: Path) -> None:
    with pytest.raises(StoreError, match="already open for writing in this process"):
        Store.open(db_path)
    with pytest.raises(StoreError, match="already open for writing in this process"):
        Store.open(db_path, read_only=True)


def test_read_only_needs_an_existing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "opsagent.duckdb"
    with pytest.raises(StoreError, match=re.escape(f"the store {missing} does not exist")):
        Store.open(missing, read_only=True)
    assert not missing.parent.exists()


async def test_a_read_only_store_refuses_writes(db_path: Path) -> None:
    await Store.open(db_path).close()
    with Store.open(db_path, read_only=True) as store:
        with pytest.raises(StoreError, match="read-only"):
            store.append(result())
        with pytest.raises(StoreError, match="read-only"):
            await store.prune(timedelta(days=1))
        assert await store.count_results() == 0  # the async reads work too


# -- migrations ----------------------------------------------------------------------------


def _raw(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Look at (or tamper with) a closed store file directly, as an old or new opsagent would."""
    con = duckdb.connect(str(path))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def test_migrations_run_once(db_path: Path) -> None:
    for _ in range(3):
        store = Store.open(db_path)
        assert await store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
        await store.close()
    rows = _raw(db_path, "SELECT version, name FROM schema_version ORDER BY version")
    assert rows == [(i + 1, m.name) for i, m in enumerate(MIGRATIONS)]


async def test_pending_migrations_are_applied_and_keep_data(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(db_path)
    await store.start()
    store.append(result())
    await store.close()

    extra = Migration("widgets", "CREATE TABLE test_widgets (id BIGINT, title VARCHAR)")
    monkeypatch.setattr(agent.store, "MIGRATIONS", (*MIGRATIONS, extra))
    monkeypatch.setattr(agent.store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    store = Store.open(db_path)
    assert await store.schema_version() == SCHEMA_VERSION + 1
    assert await store.count_results() == 1
    assert (await store.query("SELECT count(*) FROM test_widgets")).rows == [(0,)]
    await store.close()


async def test_a_failing_migration_leaves_the_previous_version(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await Store.open(db_path).close()
    broken = Migration("broken", "CREATE TABLE half (x INTEGER); SELECT no_such_column FROM half")
    with monkeypatch.context() as patch:
        patch.setattr(agent.store, "MIGRATIONS", (*MIGRATIONS, broken))
        patch.setattr(agent.store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        failed = rf"migration {SCHEMA_VERSION + 1} \(broken\) failed: .*no_such_column"
        with pytest.raises(StoreError, match=failed):
            Store.open(db_path)
    tables = _raw(db_path, "SELECT table_name FROM duckdb_tables() ORDER BY 1")
    assert ("half",) not in tables
    assert _raw(db_path, "SELECT max(version) FROM schema_version") == [(SCHEMA_VERSION,)]
    await Store.open(db_path).close()  # and the file still opens


@pytest.mark.parametrize("read_only", [False, True], ids=["read-write", "read-only"])
async def test_a_store_from_a_newer_opsagent_is_refused(db_path: Path, read_only: bool) -> None:
    await Store.open(db_path).close()
    newer = SCHEMA_VERSION + 1
    _raw(db_path, f"INSERT INTO schema_version VALUES ({newer}, 'future', now()::TIMESTAMP)")
    with pytest.raises(StoreError, match=f"schema version {newer}, newer than this opsagent"):
        Store.open(db_path, read_only=read_only)
    # The refusal released the file: another process gets the same answer, not "in use".
    assert "newer than this opsagent" in await asyncio.to_thread(_open_in_child, db_path, True)
    _raw(db_path, f"DELETE FROM schema_version WHERE version = {newer}")
    await Store.open(db_path).close()


async def test_read_only_refuses_a_store_that_needs_upgrading(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await Store.open(db_path).close()
    monkeypatch.setattr(agent.store, "MIGRATIONS", (*MIGRATIONS, Migration("x", "SELECT 1")))
    monkeypatch.setattr(agent.store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="start the agent once to upgrade it"):
        Store.open(db_path, read_only=True)


# -- read-only queries ---------------------------------------------------------------------


REFUSED = {
    "insert": "INSERT INTO results (ts) VALUES (now())",
    "delete": "DELETE FROM results",
    "update": "UPDATE results SET probe = 'x'",
    "drop": "DROP TABLE results",
    "create": "CREATE TABLE x AS SELECT * FROM results",
    "alter": "ALTER TABLE results RENAME TO old",
    "two-statements": "SELECT 1; DELETE FROM results",
    "two-selects": "SELECT 1; SELECT 2",
    "copy-out": "COPY results TO 'leak.csv'",
    "copy-database": "COPY FROM DATABASE opsagent TO other",
    "attach": "ATTACH 'other.duckdb' AS other",
    "detach": "DETACH opsagent",
    "export": "EXPORT DATABASE 'dump'",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "set": "SET threads = 1",
    "pragma": "PRAGMA version",
    "call": "CALL pragma_version()",
    "checkpoint": "CHECKPOINT",
    "vacuum": "VACUUM",
    "begin": "BEGIN TRANSACTION",
    "delete-in-cte": "WITH d AS (DELETE FROM results RETURNING *) SELECT count(*) FROM d",
    "explain-analyze-delete": "EXPLAIN ANALYZE DELETE FROM results",
    "comment-hidden": "/* SELECT */ DELETE FROM results -- ; SELECT 1",
    "read-a-file": "SELECT * FROM read_text('/etc/hostname')",
    "empty": "  -- nothing\n",
}


@pytest.mark.parametrize("sql", REFUSED.values(), ids=REFUSED.keys())
async def test_query_refuses_anything_but_a_read(store: Store, sql: str) -> None:
    store.append(result())
    await store.flush()
    tables = await store.query("SHOW TABLES")
    with pytest.raises(StoreError, match=r"^(refused: |query failed: )"):
        await store.query(sql)
    assert await store.count_results() == 1
    assert (await store.history("shop-api"))[0].probe == "shop-api"
    assert await store.query("SHOW TABLES") == tables


ALLOWED = {
    "select": ("SELECT probe, status FROM results", [("shop-api", "ok")]),
    "with": ("WITH r AS (SELECT probe FROM results) SELECT count(*) FROM r", [(1,)]),
    "from-first": ("FROM results SELECT probe", [("shop-api",)]),
    "comments": ("-- how many\nSELECT /* all */ count(*) FROM results;", [(1,)]),
    "quoted-keyword": ('SELECT 1 AS "set"', [(1,)]),
    "string-with-keyword": ("SELECT 'DELETE FROM results' AS s", [("DELETE FROM results",)]),
    "describe": ("SELECT count(*) FROM (DESCRIBE results)", [(14,)]),
}


@pytest.mark.parametrize(("sql", "rows"), ALLOWED.values(), ids=ALLOWED.keys())
async def test_query_runs_reads(store: Store, sql: str, rows: list[tuple[Any, ...]]) -> None:
    store.append(result())
    await store.flush()
    assert (await store.query(sql)).rows == rows


async def test_query_takes_parameters_and_truncates(store: Store) -> None:
    for i in range(30):
        store.append(result(f"p{i % 3}", values={"i": i}))
    await store.flush()
    answer = await store.query(
        "SELECT probe, count(*) AS n FROM results WHERE probe <> ? GROUP BY probe ORDER BY probe",
        ["p2"],
    )
    assert answer == (["probe", "n"], [("p0", 10), ("p1", 10)], False)
    answer = await store.query("SELECT * FROM results", max_rows=25)
    assert (len(answer.rows), answer.truncated) == (25, True)
    assert answer.columns[:3] == ["id", "ts", "probe"]


async def test_query_errors_carry_duckdb_s_message(store: Store) -> None:
    with pytest.raises(StoreError, match=r'query failed: .*"no_such_column"'):
        await store.query("SELECT no_such_column FROM results")
    with pytest.raises(StoreError, match="query failed: Parser Error"):
        await store.query("SELEC 1")
    # A failed query leaves the connection usable (its transaction was rolled back).
    store.append(result())
    await store.flush()
    assert await store.count_results() == 1


async def test_query_works_read_only_too(db_path: Path) -> None:
    store = Store.open(db_path)
    await store.start()
    store.append(result())
    await store.close()
    with Store.open(db_path, read_only=True) as ro:
        assert ro.reader.query("SELECT count(*) FROM results").rows == [(1,)]
        with pytest.raises(StoreError, match="refused"):
            ro.reader.query("DELETE FROM results")


# -- status --------------------------------------------------------------------------------


async def test_latest_per_probe_counts_failures_since_the_last_ok(store: Store) -> None:
    t0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    runs = {
        "api": [Status.OK, Status.FAIL, Status.OK, Status.FAIL, Status.FAIL],
        "db": [Status.FAIL, Status.ERROR, Status.FAIL],
        "cache": [Status.FAIL, Status.OK],
    }
    for probe, statuses in runs.items():
        for i, status in enumerate(statuses):
            store.append(result(probe, status, started_at=t0 + timedelta(minutes=i)))
    await store.flush()

    latest = {row.result.probe: row for row in await store.latest_per_probe()}
    assert list(latest) == ["api", "cache", "db"]
    assert latest["api"].consecutive_failures == 2
    assert latest["api"].last_ok_at == t0 + timedelta(minutes=2)
    assert latest["api"].result.started_at == t0 + timedelta(minutes=4)
    assert latest["api"].runs == 5
    assert latest["db"].consecutive_failures == 3
    assert latest["db"].last_ok_at is None
    assert latest["cache"].consecutive_failures == 0
    assert latest["cache"].result.status is Status.OK


async def test_latest_per_probe_of_an_empty_store(store: Store) -> None:
    assert await store.latest_per_probe() == []


async def test_history_is_newest_first_and_limited(store: Store) -> None:
    for i in range(5):
        store.append(result(values={"i": i}))
    store.append(result("other"))
    await store.flush()
    assert [r.values["i"] for r in await store.history("shop-api", limit=3)] == [4, 3, 2]
    assert await store.count_results() == 6
    assert await store.count_results("other") == 1


async def test_meta_values(store: Store) -> None:
    assert await store.get_meta("agent.started_at") is None
    await store.set_meta("agent.started_at", "2025-01-01T00:00:00Z")
    await store.set_meta("agent.started_at", "2025-01-02T00:00:00Z")
    assert await store.get_meta("agent.started_at") == "2025-01-02T00:00:00Z"


async def test_the_agent_s_connection_is_small(store: Store, db_path: Path) -> None:
    def settings(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
        sql = "SELECT current_setting('threads'), current_setting('memory_limit')"
        return con.execute(sql).fetchall()

    assert await store.run(settings) == [(1, "61.0 MiB")]  # 64 MB, shown in MiB
    await store.close()
    with Store.open(db_path, read_only=True) as reader:  # the CLI keeps DuckDB's defaults
        threads, _ = reader.run_read_only(settings)[0]
    default = duckdb.connect(":memory:").execute("SELECT current_setting('threads')").fetchall()
    assert threads == default[0][0]


async def test_probe_counters_are_replaced_whole(store: Store) -> None:
    since = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    later = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))  # 03:04:05 UTC
    first = [
        ProbeCounters("shop-api", 12, 1, 2, since, later),
        ProbeCounters("db.main_1", 2**40, 0, 0, since, later),
        *(ProbeCounters(f"p{i:04d}", i, i % 3, i % 5, since, later) for i in range(2000)),
    ]
    await store.save_probe_counters(first)
    store.append(result())  # results and counters share the connection and its thread
    saved = {c.probe: c for c in await store.probe_counters()}
    assert len(saved) == 2002
    assert saved["shop-api"] == ProbeCounters(
        "shop-api", 12, 1, 2, since, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    assert saved["db.main_1"].runs == 2**40
    assert (saved["p1999"].runs, saved["p1999"].missed, saved["p1999"].overlaps) == (1999, 1, 4)

    await store.save_probe_counters([ProbeCounters("shop-api", 13, 1, 2, since, since)])
    assert [(c.probe, c.runs) for c in await store.probe_counters()] == [("shop-api", 13)]
    await store.save_probe_counters([])
    assert await store.probe_counters() == []
    await store.flush()
    assert await store.count_results() == 1


# -- retention -----------------------------------------------------------------------------


async def test_prune_and_compact_shrink_the_file_and_keep_the_rest(db_path: Path) -> None:
    old = utcnow() - timedelta(days=40)
    store = Store.open(db_path)
    await store.start()
    for i in range(40_000):
        recent = i % 20 == 0
        store.append(
            result(
                f"probe-{i % 13}",
                started_at=utcnow() if recent else old + timedelta(seconds=i),
                values={"i": i, "recent": recent, "text": f"value number {i} " * 4},
                detail=f"run {i} of a probe that says something longer than a word",
            )
        )
    await store.close()
    full_size = size(db_path)

    store = Store.open(db_path)
    await store.start()
    assert await store.prune(timedelta(days=30)) == 38_000
    assert size(db_path) >= full_size  # DELETE alone never shrinks the file
    await store.compact()
    assert size(db_path) < full_size / 2
    assert [p.name for p in listdir(db_path.parent)] == [db_path.name]  # no leftovers

    assert await store.count_results() == 2_000
    [newest] = await store.history("probe-0", limit=1)
    assert newest.values["recent"] is True
    # The store goes on working on the new file, ids continue past the old ones.
    store.append(result("after-compaction"))
    await store.flush()
    ids = await store.query("SELECT max(id) FROM results WHERE probe = 'after-compaction'")
    assert ids.rows == [(40_001,)]
    await store.close()

    with Store.open(db_path, read_only=True) as reopened:
        assert reopened.reader.count_results() == 2_001
        assert reopened.reader.schema_version() == SCHEMA_VERSION


async def test_prune_with_nothing_old(store: Store) -> None:
    store.append(result())
    await store.flush()
    assert await store.prune(timedelta(days=1)) == 0
    assert await store.count_results() == 1


async def test_an_interrupted_compaction_is_cleaned_up_at_open(db_path: Path) -> None:
    await Store.open(db_path).close()
    leftover = db_path.parent / f".{db_path.name}.compact"
    leftover.mkdir()
    (leftover / db_path.name).write_bytes(b"half a database")
    await Store.open(db_path).close()
    assert not leftover.exists()


# -- bad rows and failing writes -----------------------------------------------------------


async def test_bad_rows_are_rejected_alone_and_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    good = [result(values={"i": i}) for i in range(10)]
    # Results pydantic would never build; they stand for a bug upstream.
    null_duration = ProbeResult.model_construct(**{**good[0].__dict__, "duration_ms": None})
    not_a_name = ProbeResult.model_construct(**{**good[0].__dict__, "probe": None})
    for r in [*good[:5], null_duration, *good[5:], not_a_name]:
        store.append(r)
    await store.flush()

    assert await store.count_results() == 10
    stats = store.stats()
    assert (stats.rows_written, stats.rows_rejected, stats.failed_flushes) == (10, 2, 0)
    assert [r.values["i"] for r in reversed(await store.history("shop-api"))] == list(range(10))
    rejections = [r.message for r in caplog.records if "it is not stored" in r.message]
    assert len(rejections) == 2
    assert any("NOT NULL" in m for m in rejections)


_FULL_DISK = """
import asyncio, json, os, resource, signal, sys, time
from pathlib import Path
from agent.results import ProbeResult, Status, utcnow
from agent.store import ProbeCounters, Store

async def main(path: Path) -> None:
    store = Store.open(path)
    await store.start()
    # No file may grow past 4 KiB, as on a full disk: writes fail with EFBIG (SIGXFSZ
    # ignored) until the limit is lifted again.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    for i in range(5000):
        store.append(ProbeResult(probe="p", kind="http", started_at=utcnow(), duration_ms=1.0,
                                 status=Status.OK, detail=f"{i} " + "x" * 200))
    deadline = time.monotonic() + 30
    while store.stats().failed_flushes < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    failing = store.stats()
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    await asyncio.wait_for(store.flush(), 60)
    healed = store.stats()
    count = await store.count_results()
    await store.close()
    print(json.dumps({"failing": [failing.failed_flushes, failing.retrying, failing.last_error,
                                  failing.queue_depth],
                      "healed": [healed.rows_written, healed.rows_rejected, healed.retrying],
                      "count": count}))

asyncio.run(main(Path(sys.argv[1])))
"""


def test_a_failing_write_keeps_the_rows_and_retries(db_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(db_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    failed_flushes, retrying, last_error, queue_depth = report["failing"]
    assert failed_flushes >= 2
    assert retrying is True
    assert "File too large" in last_error
    assert queue_depth == 5000
    assert report["healed"] == [5000, 0, False]
    assert report["count"] == 5000
    assert re.search(r"writing \d+ results failed \(attempt 1\)", child.stderr)
    assert "writes recovered" in child.stderr


# -- fixtures' hygiene ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_store_left_open() -> Iterator[None]:
    yield
    assert not agent.store._WRITERS, "a test left a store open"
