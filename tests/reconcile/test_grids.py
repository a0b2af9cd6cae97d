"""Grids: level widths divide down to single keys, children nest in their parents."""

from __future__ import annotations

import pytest

from agent.reconcile.grids import FANOUT, HashGrid, RangeGrid, range_width


@pytest.mark.parametrize("span", [1, 15, 16, 17, 1000, 10**6, 10**7 + 3, 2**62])
@pytest.mark.parametrize("cells", [1, 7, 2000, 200_000])
def test_range_widths_refine_exactly_down_to_one(span: int, cells: int) -> None:
    grid = RangeGrid(lo=-5, width=range_width(span, cells))
    wanted = -(-span // cells)
    assert wanted <= grid.width < 2 * wanted  # near the asked-for width
    seen = 0
    while not grid.atomic:
        finer = grid.refine()
        assert grid.width % finer.width == 0  # a child never straddles two parents
        grid = finer
        seen += 1
        assert seen < 40
    assert grid.width == 1


def test_range_cells_and_their_sql() -> None:
    grid = RangeGrid(lo=-10, width=16)
    assert [grid.cell(k) for k in (-10, 5, 6, 100)] == [0, 0, 1, 6]
    finer = grid.refine()
    assert finer.width == 1
    assert grid.parent(finer.cell(6), finer) == grid.cell(6)
    assert grid.where_sql("k", {0, 1, 2, 5}) == "(k BETWEEN -10 AND 37 OR k BETWEEN 70 AND 85)"
    assert grid.bucket_sql("postgres", "k") == "((CAST(k AS BIGINT) - (-10)) / 16)"
    assert grid.bucket_sql("mysql", "k") == "((k - (-10)) DIV 16)"
    assert grid.bucket_sql("duckdb", "k") == "((CAST(k AS BIGINT) - (-10)) // 16)"


def test_hash_cells_nest() -> None:
    grid = HashGrid(100)
    finer = grid.refine()
    assert finer.modulus == 100 * FANOUT
    for key_hash in (0, 99, 12345, 2**31 - 2):
        assert grid.parent(finer.cell(key_hash), finer) == grid.cell(key_hash)
    assert grid.where_sql("h", [3, 1]) == "(h % 100) IN (1, 3)"
    assert not grid.atomic
    assert HashGrid(2**31).atomic
