"""Property: for any two keyed tables, the probe reports exactly their differences.

Hypothesis draws a set of keys and, per key, whether it is on both sides or one, and
its values (NULL, equal or drifted). The tables are written to PostgreSQL (left) and
MariaDB (right), and the probe must report exactly the expected differences on the
checksum path (with tiny cells, so several levels are walked, and scans cut into
key-range parts), starting at the cells as a fresh run over a wide key range does, on
the run after that, and starting with the whole-table checksums; and on the full path.
Integer keys exercise range cells, text keys hash cells.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.probe_spec import RunContext
from agent.reconcile import checksum, engine, sides
from agent.reconcile.values import sort_key, to_json
from probes.reconcile import ReconcileSpec, run
from tests.reconcile.conftest import Data, sources

Value = Decimal | None
Table = dict[Any, Value]

VALUES = st.one_of(
    st.none(),
    st.decimals(
        min_value=-(10**6), max_value=10**6, places=2, allow_nan=False, allow_infinity=False
    ),
)
KEYS = {
    "int": st.integers(min_value=-(2**40), max_value=2**40),
    "text": st.text(alphabet="abcdefghij0123456789-", min_size=1, max_size=8),
}
COLUMNS = {
    "int": ("k BIGINT PRIMARY KEY, v NUMERIC(14,2)", "k BIGINT PRIMARY KEY, v DECIMAL(14,2)"),
    "text": (
        "k VARCHAR(20) PRIMARY KEY, v NUMERIC(14,2)",
        "k VARCHAR(20) COLLATE utf8mb4_bin PRIMARY KEY, v DECIMAL(14,2)",
    ),
}


@st.composite
def table_pairs(draw: st.DrawFn, keys: st.SearchStrategy[Any]) -> tuple[Table, Table]:
    """Two tables that share most keys; some values drift, some keys are on one side only."""
    left: Table = {}
    right: Table = {}
    for key in draw(st.sets(keys, max_size=150)):
        where = draw(st.sampled_from(["both", "both", "both", "left", "right"]))
        value = draw(VALUES)
        if where != "right":
            left[key] = value
        if where != "left":
            drift = draw(st.booleans()) if where == "both" else False
            right[key] = draw(VALUES) if drift else value
    return left, right


def expected(left: Table, right: Table) -> list[dict[str, Any]]:
    """The evidence the probe must give, in its order."""
    found = []
    for key in sorted(left.keys() | right.keys(), key=lambda k: sort_key((k,))):
        if key not in right:
            kind, a, b = "missing_right", {"v": to_json(left[key])}, None
        elif key not in left:
            kind, a, b = "missing_left", None, {"v": to_json(right[key])}
        elif left[key] != right[key]:
            kind, a, b = "mismatch", {"v": to_json(left[key])}, {"v": to_json(right[key])}
        else:
            continue
        found.append({"key": {"k": key}, "left": a, "right": b, "kind": kind, "truth": "left"})
    return found


@dataclass
class Tables:
    """The left (PostgreSQL) and right (MariaDB) tables, refilled for every example."""

    data: Data
    key_kind: str
    left: str
    right: str

    def fill(self, left: Table, right: Table) -> None:
        self.data.pg_execute(f"TRUNCATE {self.left}")
        self.data.maria_execute(f"TRUNCATE TABLE {self.right}")
        assert self.data._pg is not None and self.data._maria is not None
        if left:
            with self.data._pg.cursor() as cur:
                cur.executemany(f"INSERT INTO {self.left} VALUES (%s, %s)", list(left.items()))
        if right:
            with self.data._maria.cursor() as cur:
                cur.executemany(f"INSERT INTO {self.right} VALUES (%s, %s)", list(right.items()))


@pytest.fixture(scope="module", params=["int", "text"])
def tables(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tables]:
    pg_columns, maria_columns = COLUMNS[request.param]
    data = Data(tmp_path_factory.mktemp("property"))
    try:
        yield Tables(
            data, request.param, data.pg("l", pg_columns, []), data.maria("r", maria_columns, [])
        )
    finally:
        data.close()


async def probe(tables: Tables, ctx: RunContext, mode: str) -> list[dict[str, Any]]:
    spec = ReconcileSpec.model_validate(
        {
            "name": "prop",
            "kind": "reconcile",
            "left": {"source": "pg", "query": f"SELECT k, v FROM {tables.left}"},
            "right": {"source": "maria", "query": f"SELECT k, v FROM {tables.right}"},
            "key": ["k"],
            "compare": ["v"],
            "mode": mode,
            "max_evidence": 1000,
        }
    )
    result = await run(spec, ctx)
    assert result.error is None, result.error
    diffs = result.evidence
    assert result.values["mismatched"] == sum(d["kind"] == "mismatch" for d in diffs)
    assert result.values["missing_left"] == sum(d["kind"] == "missing_left" for d in diffs)
    assert result.values["missing_right"] == sum(d["kind"] == "missing_right" for d in diffs)
    return diffs


async def four_runs(tables: Tables, tmp: Path) -> list[list[dict[str, Any]]]:
    """Every path: cells first, after drift, whole-table pass first (in parts), full."""
    saved = checksum.PULL_ROWS, sides.SPLIT_FROM, sides.SPLIT_KEYS, engine.CELLS_FIRST_KEYS
    # Tiny cells: several levels down to single keys; and scans in key-range parts.
    checksum.PULL_ROWS, sides.SPLIT_FROM, sides.SPLIT_KEYS = 2, 2, 2
    found = []
    try:
        # A fresh run starting at the cells, then the next run (which starts at the
        # cells when the first found drift, with the whole-table pass when not).
        engine.CELLS_FIRST_KEYS = 0
        ctx = RunContext(base_dir=tmp, sources=sources(tmp))
        try:
            found += [await probe(tables, ctx, "checksum"), await probe(tables, ctx, "checksum")]
        finally:
            await ctx.aclose()
        # A fresh run starting with the whole-table pass; then the full path.
        engine.CELLS_FIRST_KEYS = 2**62
        ctx = RunContext(base_dir=tmp, sources=sources(tmp))
        try:
            found += [await probe(tables, ctx, "checksum"), await probe(tables, ctx, "full")]
        finally:
            await ctx.aclose()
    finally:
        checksum.PULL_ROWS, sides.SPLIT_FROM, sides.SPLIT_KEYS, engine.CELLS_FIRST_KEYS = saved
    return found


def test_reports_exactly_the_differences(tables: Tables, tmp_path: Path) -> None:
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(pair=table_pairs(KEYS[tables.key_kind]))
    def check(pair: tuple[Table, Table]) -> None:
        left, right = pair
        tables.fill(left, right)
        want = expected(left, right)
        assert asyncio.run(four_runs(tables, tmp_path)) == [want] * 4

    check()
