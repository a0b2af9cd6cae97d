"""The reconcile probe against real PostgreSQL, MariaDB, Redis, SQLite and DuckDB on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.connectors import Rows, SqlConnector
from agent.probe_spec import RunContext
from agent.reconcile import checksum, engine, sides
from agent.results import Observation
from agent.sources import PostgresSource
from probes.reconcile import ReconcileSpec, run
from tests.reconcile.conftest import Data, sources

STOCK = "sku BIGINT PRIMARY KEY, available NUMERIC(12,2)"
STOCK_MARIA = "sku BIGINT PRIMARY KEY, available DECIMAL(12,2)"
STOCK_LITE = "sku INTEGER PRIMARY KEY, available REAL"
STOCK_DUCK = "sku BIGINT PRIMARY KEY, available DECIMAL(12,2)"


def spec(**fields: Any) -> ReconcileSpec:
    base: dict[str, Any] = {"name": "stock", "kind": "reconcile", "key": ["sku"]}
    base.setdefault("compare", ["available"])
    return ReconcileSpec.model_validate({**base, **fields})


def side(source: str, table: str, columns: str = "sku, available") -> dict[str, str]:
    return {"source": source, "query": f"SELECT {columns} FROM {table}"}


def stock(n: int) -> list[tuple[int, Decimal]]:
    return [(sku, Decimal(sku % 50) + Decimal("0.5")) for sku in range(1, n + 1)]


def drifted(rows: list[tuple[int, Decimal]]) -> list[tuple[int, Decimal]]:
    """The same stock with two values changed, two rows gone and one extra row."""
    changed = {17: Decimal("99.00"), 1200: Decimal("-3.25")}
    kept = [(k, changed.get(k, v)) for k, v in rows if k not in (5, 1999)]
    return [*kept, (5000, Decimal("7.00"))]


EXPECTED = [
    {"key": {"sku": 5}, "left": {"available": 5.5}, "right": None, "kind": "missing_right"},
    {
        "key": {"sku": 17},
        "left": {"available": 17.5},
        "right": {"available": 99},
        "kind": "mismatch",
    },
    {
        "key": {"sku": 1200},
        "left": {"available": 0.5},
        "right": {"available": -3.25},
        "kind": "mismatch",
    },
    {"key": {"sku": 1999}, "left": {"available": 49.5}, "right": None, "kind": "missing_right"},
    {"key": {"sku": 5000}, "left": None, "right": {"available": 7}, "kind": "missing_left"},
]


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Data]:
    """Tables on the real servers, dropped after the test."""
    made = Data(tmp_path)
    yield made
    made.close()


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[RunContext]:
    """A run context with the sources pg, maria, lite, duck and cache (see tests/reconcile)."""
    context = RunContext(base_dir=tmp_path, sources=sources(tmp_path))
    yield context
    await context.aclose()


@pytest.fixture
def small_cells() -> Iterator[None]:
    """Pull only cells of at most 4 rows, so 2,000 rows take several checksum levels."""
    saved = checksum.PULL_ROWS
    checksum.PULL_ROWS = 4
    yield
    checksum.PULL_ROWS = saved


def without_truth(evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert {e["truth"] for e in evidence} <= {"left"}
    return [{k: v for k, v in e.items() if k != "truth"} for e in evidence]


def assert_found_drift(result: Observation) -> None:
    assert result.error is None, result.error
    assert without_truth(result.evidence) == EXPECTED
    assert result.values["mismatched"] == 2
    assert result.values["missing_right"] == 2
    assert result.values["missing_left"] == 1
    assert result.values["checked"] == 2001
    assert result.values["pending_grace"] == 0


# --- finding differences, per pair of engines and per path -------------------------


@pytest.mark.parametrize("mode", ["checksum", "full"])
@pytest.mark.parametrize(
    "pair", ["pg-maria", "maria-pg", "pg-duck", "lite-maria", "duck-pg"], ids=str
)
async def test_finds_drift_with_exact_keys_and_both_values(
    ctx: RunContext, data: Data, small_cells: None, mode: str, pair: str
) -> None:
    make = {
        "pg": lambda name, rows: data.pg(name, STOCK, rows),
        "maria": lambda name, rows: data.maria(name, STOCK_MARIA, rows),
        "lite": lambda name, rows: data.lite(name, STOCK_LITE, rows),
        "duck": lambda name, rows: data.duck(name, STOCK_DUCK, rows),
    }
    left_kind, right_kind = pair.split("-")
    rows = stock(2000)
    left = make[left_kind]("shop", rows)
    right = make[right_kind]("warehouse", drifted(rows))
    result = await run(
        spec(left=side(left_kind, left), right=side(right_kind, right), mode=mode), ctx
    )
    assert_found_drift(result)
    assert result.detail.startswith(f"2,001 keys compared ({mode}, ")
    if mode == "checksum" and "lite" not in pair:
        assert result.values["rows_transferred"] < 400  # of 3,999 rows on both sides


async def test_checksum_path_with_default_cells(ctx: RunContext, data: Data) -> None:
    rows = stock(2000)
    left, right = data.pg("shop", STOCK, rows), data.maria("wh", STOCK_MARIA, drifted(rows))
    result = await run(
        spec(left=side("pg", left), right=side("maria", right), mode="checksum"), ctx
    )
    assert_found_drift(result)


async def test_unchanged_tables_cost_one_scan_per_side(ctx: RunContext, data: Data) -> None:
    rows = stock(3000)
    left, right = data.pg("shop", STOCK, rows), data.maria("wh", STOCK_MARIA, rows)
    result = await run(
        spec(left=side("pg", left), right=side("maria", right), mode="checksum"), ctx
    )
    assert result.error is None
    assert result.values == {
        "mismatched": 0,
        "missing_left": 0,
        "missing_right": 0,
        "checked": 3000,
        "pending_grace": 0,
        # Per side: 100 sample rows (for the column kinds), the key's min/max and one
        # checksum row.
        "rows_transferred": 204,
    }
    assert result.detail == "3,000 keys compared (checksum, 204 rows read): all agree"


class Recorder:
    """A SQL connector that passes every query on to a real one and keeps its text."""

    def __init__(self, real: SqlConnector) -> None:
        self.real = real
        self.dialect = real.dialect
        self.sql: list[str] = []

    async def fetch(
        self,
        sql: str,
        params: Any = None,
        *,
        max_rows: int = 1000,
        timeout: float = 10.0,  # noqa: ASYNC109 - the connector contract
    ) -> Rows:
        self.sql.append(sql)
        return await self.real.fetch(sql, params, max_rows=max_rows, timeout=timeout)

    async def aclose(self) -> None:
        await self.real.aclose()

    def kinds(self) -> list[str]:
        """What each query was: sample, summary, bounds, cells or pull."""
        found = []
        for sql in self.sql:
            if sql.startswith("SELECT * FROM"):
                found.append("sample")
            elif sql.startswith("SELECT count(*), sum(h)"):
                found.append("summary")
            elif sql.startswith("SELECT min("):
                found.append("bounds")
            elif sql.startswith("SELECT b, count(*), sum(h)"):
                found.append("cells")
            else:
                found.append("pull")
        self.sql.clear()
        return found


def recorders(ctx: RunContext) -> tuple[Recorder, Recorder]:
    pg, maria = ctx.connector("pg"), ctx.connector("maria")
    assert pg.dialect == "postgres" and maria.dialect == "mysql"
    ctx.connectors["pg"] = left = Recorder(pg)
    ctx.connectors["maria"] = right = Recorder(maria)
    return left, right


async def test_what_each_run_reads(ctx: RunContext, data: Data) -> None:
    rows = stock(2000)
    left_table, right_table = data.pg("shop", STOCK, rows), data.maria("wh", STOCK_MARIA, rows)
    left, right = recorders(ctx)
    probe = spec(left=side("pg", left_table), right=side("maria", right_table), mode="checksum")

    # Unchanged: one scan per side (after a 100-row sample that learns the column kinds,
    # and min/max of the integer key, answered by its index).
    assert (await run(probe, ctx)).values["mismatched"] == 0
    assert left.kinds() == right.kinds() == ["sample", "bounds", "summary"]

    # Drift appears: whole-table checksums, then the cells, then the differing rows.
    data.maria_execute(f"UPDATE {right_table} SET available = 0 WHERE sku = 700")
    assert (await run(probe, ctx)).values["mismatched"] == 1
    assert left.kinds() == right.kinds() == ["sample", "bounds", "summary", "cells", "pull"]

    # Drift seen last time: the whole-table pass is skipped. Still there, so still found.
    assert (await run(probe, ctx)).values["mismatched"] == 1
    assert left.kinds() == right.kinds() == ["sample", "bounds", "cells", "pull"]

    # Repaired: the first level's cells agree, which ends the run; the next run starts
    # with the whole-table checksums again.
    data.maria_execute(f"UPDATE {right_table} SET available = 0.5 WHERE sku = 700")
    repaired = await run(probe, ctx)
    assert (repaired.values["mismatched"], repaired.values["checked"]) == (0, 2000)
    assert left.kinds() == right.kinds() == ["sample", "bounds", "cells"]
    assert (await run(probe, ctx)).values["mismatched"] == 0
    assert left.kinds() == right.kinds() == ["sample", "bounds", "summary"]


async def test_a_fresh_run_over_a_wide_key_range_starts_at_the_cells(
    ctx: RunContext, data: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a fresh agent does on a table of at least CELLS_FIRST_KEYS keys (lowered here):
    # no whole-table pass, so drift costs one scan per side, and so do unchanged tables.
    monkeypatch.setattr(engine, "CELLS_FIRST_KEYS", 1000)
    rows = stock(2000)
    left_table = data.pg("shop", STOCK, rows)
    right_table = data.maria("wh", STOCK_MARIA, drifted(rows))
    left, right = recorders(ctx)
    probe = spec(left=side("pg", left_table), right=side("maria", right_table), mode="checksum")
    assert_found_drift(await run(probe, ctx))
    assert left.kinds() == right.kinds() == ["sample", "bounds", "cells", "pull"]

    fresh = RunContext(base_dir=ctx.base_dir, sources=ctx.sources)
    try:
        left, right = recorders(fresh)
        same = spec(left=side("pg", left_table), right=side("pg", left_table), mode="checksum")
        agreed = await run(same, fresh)
        assert agreed.error is None, agreed.error
        assert (agreed.values["mismatched"], agreed.values["checked"]) == (0, 2000)
        assert left.kinds() == ["sample", "sample", "bounds", "bounds", "cells", "cells"]
    finally:
        await fresh.aclose()


async def test_wide_key_ranges_are_scanned_in_concurrent_parts(
    ctx: RunContext, data: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keys from -10^12 to 10^12, and a NULL key on the right (MariaDB, the dialect that
    # is split); cut into parts (thresholds lowered), the whole-table pass must still
    # count every row, NULL keys included, and the cells must still refuse the NULL key.
    monkeypatch.setattr(engine, "CELLS_FIRST_KEYS", 10**15)  # whole-table pass first
    monkeypatch.setattr(sides, "SPLIT_KEYS", 2)
    monkeypatch.setattr(sides, "SPLIT_FROM", 2)
    rows = [(sku * 10**9, Decimal(sku % 50)) for sku in range(-1000, 1001)]
    unique, unique_maria = (c.replace("PRIMARY KEY", "UNIQUE") for c in (STOCK, STOCK_MARIA))
    left_table = data.pg("shop", unique, rows)
    right_table = data.maria("wh", unique_maria, [*rows, (None, Decimal(1))])
    left, right = recorders(ctx)
    probe = spec(left=side("pg", left_table), right=side("maria", right_table), mode="checksum")
    result = await run(probe, ctx)
    assert result.error == "the right side has a row with a NULL key"
    assert left.kinds() == ["sample", "bounds", "summary", "cells"]  # PostgreSQL: not split
    assert right.kinds() == ["sample", "bounds", "summary", "summary", "cells", "cells"]

    # The same NULL-key row on both sides: the parts count it (2,002 rows, not 2,001).
    data.pg_execute(f"INSERT INTO {left_table} VALUES (NULL, 1)")
    fresh = RunContext(base_dir=ctx.base_dir, sources=ctx.sources)
    try:
        left, right = recorders(fresh)
        agreed = await run(probe, fresh)
        assert agreed.error is None, agreed.error
        assert (agreed.values["mismatched"], agreed.values["checked"]) == (0, 2002)
        assert left.kinds() == ["sample", "bounds", "summary"]
        assert right.kinds() == ["sample", "bounds", "summary", "summary"]
    finally:
        await fresh.aclose()


async def test_auto_compares_small_tables_in_full_and_large_ones_by_checksum(
    ctx: RunContext, data: Data
) -> None:
    rows = stock(2000)
    left, right = data.pg("shop", STOCK, rows), data.maria("wh", STOCK_MARIA, drifted(rows))
    sides = {"left": side("pg", left), "right": side("maria", right)}
    small = await run(spec(**sides, full_below=5000), ctx)
    large = await run(spec(**sides, full_below=100), ctx)
    assert small.detail.startswith("2,001 keys compared (full, ")
    assert large.detail.startswith("2,001 keys compared (checksum, ")
    assert small.evidence == large.evidence


async def test_text_and_composite_keys_use_hash_cells(
    ctx: RunContext, data: Data, small_cells: None
) -> None:
    columns = "region VARCHAR(10), sku VARCHAR(20), qty INT, PRIMARY KEY (region, sku)"
    rows = [(region, f"SKU-{n:05d}", n) for region in ("eu", "us") for n in range(600)]
    changed = [(r, s, q + 1 if s == "SKU-00042" and r == "us" else q) for r, s, q in rows]
    left = data.pg("shop", columns, rows)
    right = data.maria("wh", columns + "", [*changed[1:], ("eu", "SKU-é😀", 1)])
    fields = {"key": ["region", "sku"], "compare": ["qty"], "mode": "checksum"}
    cols = "region, sku, qty"
    result = await run(
        spec(left=side("pg", left, cols), right=side("maria", right, cols), **fields), ctx
    )
    assert result.error is None, result.error
    assert without_truth(result.evidence) == [
        {
            "key": {"region": "eu", "sku": "SKU-00000"},
            "left": {"qty": 0},
            "right": None,
            "kind": "missing_right",
        },
        {
            "key": {"region": "eu", "sku": "SKU-é😀"},
            "left": None,
            "right": {"qty": 1},
            "kind": "missing_left",
        },
        {
            "key": {"region": "us", "sku": "SKU-00042"},
            "left": {"qty": 42},
            "right": {"qty": 43},
            "kind": "mismatch",
        },
    ]
    assert result.values["checked"] == 1201
    assert result.values["rows_transferred"] < 1200


async def test_keys_only_comparison(ctx: RunContext, data: Data) -> None:
    # Orders without invoices: no compared column, only keys that exist on one side.
    left = data.pg("orders", "id INT PRIMARY KEY", [(i,) for i in range(1, 101)])
    right = data.maria(
        "invoices", "order_id INT PRIMARY KEY", [(i,) for i in range(1, 101) if i != 50]
    )
    result = await run(
        spec(
            key=["id"],
            compare=[],
            left={"source": "pg", "query": f"SELECT id FROM {left}"},
            right={"source": "maria", "query": f"SELECT order_id AS id FROM {right}"},
            mode="checksum",
        ),
        ctx,
    )
    assert without_truth(result.evidence) == [
        {"key": {"id": 50}, "left": {}, "right": None, "kind": "missing_right"}
    ]


async def test_nulls_compare_as_values(ctx: RunContext, data: Data, small_cells: None) -> None:
    rows: list[tuple[int, Decimal | None]] = [(i, Decimal(i)) for i in range(1, 301)]
    other = [(k, None if k in (10, 20) else v) for k, v in rows]
    other[29] = (30, Decimal(0))
    rows[29] = (30, None)  # NULL on the left, 0 on the right
    rows[39] = (40, None)  # NULL on both sides: equal
    other[39] = (40, None)
    left, right = data.pg("a", STOCK, rows), data.maria("b", STOCK_MARIA, other)
    for mode in ("checksum", "full"):
        result = await run(spec(left=side("pg", left), right=side("maria", right), mode=mode), ctx)
        assert [(e["key"]["sku"], e["left"], e["right"]) for e in result.evidence] == [
            (10, {"available": 10}, {"available": None}),
            (20, {"available": 20}, {"available": None}),
            (30, {"available": None}, {"available": 0}),
        ], mode


# --- tolerance and grace --------------------------------------------------------------


@pytest.mark.parametrize(
    ("tolerance", "reported"),
    [
        pytest.param(None, [1, 2, 3], id="exact"),
        pytest.param({"absolute": 0.5}, [2, 3], id="absolute"),
        pytest.param({"relative": 0.01}, [1, 3], id="relative"),
        pytest.param({"absolute": 0.5, "relative": 0.01}, [3], id="either"),
        pytest.param({"available": {"absolute": 2}}, [3], id="per-column"),
    ],
)
async def test_tolerance(
    ctx: RunContext, data: Data, tolerance: dict[str, Any] | None, reported: list[int]
) -> None:
    left_rows = [
        (1, Decimal("10.00")),
        (2, Decimal("1000.00")),
        (3, Decimal("100.00")),
        (4, Decimal("5")),
    ]
    # sku 1: off by 0.5 (5 %), sku 2: off by 1.0 (0.1 %), sku 3: off by 5 (5 %), sku 4 equal.
    right_rows = [
        (1, Decimal("10.50")),
        (2, Decimal("1001.00")),
        (3, Decimal("105.00")),
        (4, Decimal("5")),
    ]
    left, right = data.pg("a", STOCK, left_rows), data.maria("b", STOCK_MARIA, right_rows)
    for mode in ("checksum", "full"):
        fields = {"tolerance": tolerance} if tolerance else {}
        result = await run(
            spec(left=side("pg", left), right=side("maria", right), mode=mode, **fields), ctx
        )
        assert [e["key"]["sku"] for e in result.evidence] == reported, mode
        assert result.values["mismatched"] == len(reported)


async def test_grace_counts_a_difference_after_n_consecutive_runs(
    ctx: RunContext, data: Data
) -> None:
    rows = stock(50)
    left = data.pg("a", STOCK, rows)
    right = data.maria("b", STOCK_MARIA, [(k, v + 1 if k in (3, 4) else v) for k, v in rows])
    probe = spec(left=side("pg", left), right=side("maria", right), grace=2)

    first = await run(probe, ctx)
    assert (first.values["mismatched"], first.values["pending_grace"]) == (0, 2)
    assert first.evidence == []
    assert first.detail.endswith(": 2 within grace")

    # sku 4 catches up; sku 5 starts to drift.
    data.maria_execute(f"UPDATE {right} SET available = available - 1 WHERE sku = 4")
    data.maria_execute(f"UPDATE {right} SET available = available + 1 WHERE sku = 5")
    second = await run(probe, ctx)
    assert (second.values["mismatched"], second.values["pending_grace"]) == (1, 1)
    assert [e["key"]["sku"] for e in second.evidence] == [3]

    third = await run(probe, ctx)
    assert (third.values["mismatched"], third.values["pending_grace"]) == (2, 0)
    assert [e["key"]["sku"] for e in third.evidence] == [3, 5]


async def test_truth_is_recorded_in_every_evidence_row(ctx: RunContext, data: Data) -> None:
    left = data.pg("a", STOCK, [(1, Decimal(1))])
    right = data.maria("b", STOCK_MARIA, [(1, Decimal(2))])
    result = await run(spec(left=side("pg", left), right=side("maria", right), truth="right"), ctx)
    assert [e["truth"] for e in result.evidence] == ["right"]


async def test_evidence_is_capped_but_counts_are_complete(ctx: RunContext, data: Data) -> None:
    rows = stock(500)
    left = data.pg("a", STOCK, rows)
    right = data.maria("b", STOCK_MARIA, [(k, v + 1) for k, v in rows])
    result = await run(
        spec(left=side("pg", left), right=side("maria", right), max_evidence=10), ctx
    )
    assert result.values["mismatched"] == 500
    assert [e["key"]["sku"] for e in result.evidence] == list(range(1, 11))


# --- Redis hashes -----------------------------------------------------------------


async def test_a_redis_hash_against_a_table(ctx: RunContext, data: Data) -> None:
    rows = stock(300)
    left = data.pg("stock", STOCK, rows)
    cached = {str(k): str(v) for k, v in rows if k != 7}
    cached["8"] = "12"  # was 8.5
    cached["301"] = "1.5"
    key = data.redis_hash("available", cached)
    for mode in ("checksum", "full", "auto"):
        result = await run(
            spec(left=side("pg", left), right={"source": "cache", "hash": key}, mode=mode), ctx
        )
        assert result.error is None, result.error
        assert without_truth(result.evidence) == [
            {"key": {"sku": 7}, "left": {"available": 7.5}, "right": None, "kind": "missing_right"},
            {
                "key": {"sku": 8},
                "left": {"available": 8.5},
                "right": {"available": 12},
                "kind": "mismatch",
            },
            {
                "key": {"sku": 301},
                "left": None,
                "right": {"available": 1.5},
                "kind": "missing_left",
            },
        ], mode


async def test_a_redis_hash_with_text_fields(ctx: RunContext, data: Data) -> None:
    left = data.pg("stock", "sku TEXT PRIMARY KEY, available INT", [("a-1", 1), ("b-2", 2)])
    key = data.redis_hash("by-name", {"a-1": "1", "b-2": "3", "c-3": "not a number"})
    result = await run(spec(left=side("pg", left), right={"source": "cache", "hash": key}), ctx)
    assert without_truth(result.evidence) == [
        {
            "key": {"sku": "b-2"},
            "left": {"available": 2},
            "right": {"available": 3},
            "kind": "mismatch",
        },
        {
            "key": {"sku": "c-3"},
            "left": None,
            "right": {"available": "not a number"},
            "kind": "missing_left",
        },
    ]


async def test_a_redis_hash_too_big_to_read_is_refused(ctx: RunContext, data: Data) -> None:
    left = data.pg("stock", STOCK, stock(5))
    key = data.redis_hash("big", {str(i): "1" for i in range(20)})
    result = await run(
        spec(left=side("pg", left), right={"source": "cache", "hash": key}, max_rows=10), ctx
    )
    assert result.error == (
        "the right side (cache) has more than 10 rows (max_rows); "
        "it is read whole because it cannot checksum in SQL"
    )


# --- failures are results with a reason -------------------------------------------


async def test_full_mode_refuses_more_than_max_rows(ctx: RunContext, data: Data) -> None:
    rows = stock(50)
    left, right = data.pg("a", STOCK, rows), data.maria("b", STOCK_MARIA, rows)
    result = await run(
        spec(left=side("pg", left), right=side("maria", right), mode="full", max_rows=20), ctx
    )
    assert result.error == (
        "the left side has more than max_rows (20) rows to read in full: "
        "use mode: checksum (or auto), or raise max_rows"
    )


async def test_checksum_refuses_to_pull_more_than_max_rows(ctx: RunContext, data: Data) -> None:
    rows = stock(500)
    left = data.pg("a", STOCK, rows)
    right = data.maria("b", STOCK_MARIA, [(k, v + 1) for k, v in rows])
    result = await run(
        spec(left=side("pg", left), right=side("maria", right), mode="checksum", max_rows=100), ctx
    )
    assert result.error is not None
    assert result.error.startswith(
        "more than max_rows (100) rows of the left side are in differing ranges"
    )


@pytest.mark.parametrize("mode", ["checksum", "full"])
async def test_a_repeated_key_is_refused(ctx: RunContext, data: Data, mode: str) -> None:
    left = data.pg("a", "sku INT, available INT", [(1, 1), (1, 2), (2, 2)])
    right = data.maria("b", "sku INT, available INT", [(1, 1), (2, 2)])
    result = await run(spec(left=side("pg", left), right=side("maria", right), mode=mode), ctx)
    assert (
        result.error
        == "the left side has the key 1 more than once: the key columns must identify one row"
    )


async def test_a_missing_column_names_what_the_query_returns(ctx: RunContext, data: Data) -> None:
    left = data.pg("a", STOCK, stock(3))
    result = await run(
        spec(left=side("pg", left, "sku, available AS avail"), right=side("pg", left)), ctx
    )
    assert result.error == "the left query returns no column 'available' (it returns sku, avail)"


async def test_a_bad_query_names_the_side_and_the_source(ctx: RunContext, data: Data) -> None:
    left = data.pg("a", STOCK, stock(3))
    result = await run(spec(left=side("pg", left), right=side("maria", "no_such_table")), ctx)
    assert result.error is not None
    assert result.error.startswith("right (maria): ")
    assert "no_such_table" in result.error


async def test_floats_and_dates_fall_back_to_the_full_path(ctx: RunContext, data: Data) -> None:
    columns = "sku INT PRIMARY KEY, seen TIMESTAMP"
    left = data.pg("a", columns, [(1, "2024-01-01 10:00"), (2, "2024-01-01 11:00")])
    right = data.maria("b", columns, [(1, "2024-01-01 10:00"), (2, "2024-01-01 11:30")])
    fields = {
        "compare": ["seen"],
        "left": side("pg", left, "sku, seen"),
        "right": side("maria", right, "sku, seen"),
    }
    auto = await run(spec(**fields), ctx)
    assert auto.detail.startswith("2 keys compared (full, ")
    assert [e["key"]["sku"] for e in auto.evidence] == [2]
    forced = await run(spec(**fields, mode="checksum"), ctx)
    assert forced.error == (
        "mode checksum is not possible: column 'seen': datetime values cannot be checksummed; "
        "use mode: full"
    )


async def test_wrong_source_kinds(ctx: RunContext, data: Data) -> None:
    left = data.pg("a", STOCK, stock(3))
    as_hash = await run(spec(left=side("pg", left), right={"source": "pg", "hash": "x"}), ctx)
    assert as_hash.error == "right: source 'pg' is postgres; `hash` needs a Redis source"
    as_sql = await run(spec(left=side("pg", left), right=side("cache", "x")), ctx)
    assert (
        as_sql.error
        == "right: source 'cache' is redis; read a Redis hash with `hash:` instead of `query:`"
    )
    unknown = await run(spec(left=side("pg", left), right=side("nowhere", "x")), ctx)
    assert unknown.error == "unknown source 'nowhere'"


async def test_a_server_that_is_down(ctx: RunContext, data: Data, closed_port: int) -> None:
    ctx.sources["down"] = PostgresSource(
        kind="postgres", port=closed_port, database="test", user="postgres"
    )
    left = data.pg("a", STOCK, stock(3))
    result = await run(spec(left=side("pg", left), right=side("down", left)), ctx)
    assert result.error == f"right (down): connect refused 127.0.0.1:{closed_port}"


# --- the spec ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"left": {"source": "pg"}}, "give exactly one of `query`"),
        ({"key": []}, "at least 1 item"),
        ({"compare": ["sku"]}, "column 'sku' is listed twice"),
        (
            {"tolerance": {"price": {"absolute": 1}}},
            "tolerance for 'price', which is not in `compare`",
        ),
        ({"tolerance": {"absolute": -1}}, "greater than or equal to 0"),
        ({"right": {"source": "cache", "hash": "h"}, "key": ["a", "b"]}, "one key column"),
        ({"grace": 0}, "greater than or equal to 1"),
        ({"mode": "fast"}, "'auto', 'full' or 'checksum'"),
    ],
)
def test_invalid_specs(fields: dict[str, Any], message: str) -> None:
    base = {
        "left": {"source": "pg", "query": "SELECT 1"},
        "right": {"source": "maria", "query": "SELECT 1"},
    }
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("`", "`")):
        spec(**{**base, **fields})
