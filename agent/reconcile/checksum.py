"""The checksum path: find the differing rows without pulling the tables.

When the whole-table checksums differ, or when `engine` starts at the cells, each
level asks both sides, concurrently, for `count(*)` and `sum(hash)` per cell of a
grid, in one grouped query per side (a wide first level in concurrent key-range parts). Cells whose checksums agree are done. A differing cell small enough
(`pull_rows`) is pulled from both sides and compared row by row; a bigger one is split
into FANOUT children at the next level, whose query is limited to the differing
cells. The pulls of one level run together with the next level's checksums.

With 100 drifted keys in 10M rows this is one grouped scan per side, about a hundred
index range scans, and some ten thousand rows transferred (see BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection
from dataclasses import dataclass, field
from math import isqrt
from typing import Any

from agent.reconcile.compare import ReconcileError
from agent.reconcile.concurrency import all_of
from agent.reconcile.grids import Grid, HashGrid, RangeGrid, range_width
from agent.reconcile.sides import Check, Scheme, Side, Summary

PULL_ROWS = 128  # a differing range cell with at most this many rows per side is pulled
MAX_CELLS = 200_000  # cells in the first grid: bounds the rows one grouped query returns
MAX_LEVELS = 12  # a safety stop; a range grid is down to single keys well before
_EMPTY = Check(0, 0)


@dataclass
class Located:
    """What the checksum levels found: the rows of every differing cell, per side."""

    left: list[tuple[Any, ...]] = field(default_factory=list)
    right: list[tuple[Any, ...]] = field(default_factory=list)
    levels: int = 0
    left_rows: int = 0  # every row of each side, counted by the first level
    right_rows: int = 0


@dataclass(frozen=True)
class _Plan:
    """The first grid and when a cell is small enough to pull."""

    grid: Grid
    pull_rows: int


def first_grid(scheme: Scheme, left: Summary, right: Summary) -> _Plan:
    """The first level's grid, sized from the row counts.

    Range cells hold about sqrt(n)/2 rows: few enough cells that their checksums cost
    little to transfer, small enough that the index scans inside the differing ones
    are cheap. Hash cells cost a full scan per level, so they are sized to be pulled
    right after the first level.
    """
    rows = max(left.count, right.count, 1)
    bounds = [v for v in (left.lo, left.hi, right.lo, right.hi) if v is not None]
    if scheme.integer_key and bounds and max(bounds) - min(bounds) < 2**62:
        lo, hi = min(bounds), max(bounds)
        per_cell = max(PULL_ROWS, isqrt(rows) // 2)
        cells = min(MAX_CELLS, -(-rows // per_cell))
        return _Plan(RangeGrid(lo, range_width(hi - lo + 1, cells), hi), PULL_ROWS)
    per_cell = max(PULL_ROWS // 2, isqrt(rows) // 8)
    cells = min(MAX_CELLS, -(-rows // per_cell))
    return _Plan(HashGrid(max(1, cells)), 4 * per_cell)


async def locate(left: Side, right: Side, scheme: Scheme, plan: _Plan, max_rows: int) -> Located:
    """Walk the grid levels down to the differing rows; at most `max_rows` pulled per side."""
    found = Located()
    grid: Grid | None = plan.grid
    within: tuple[Grid, Collection[int]] | None = None
    pull: tuple[Grid, set[int], set[int]] | None = None
    while grid is not None or pull is not None:
        jobs: list[Awaitable[Any]] = []
        if grid is not None:
            jobs += [left.cells(scheme, grid, within), right.cells(scheme, grid, within)]
        if pull is not None:
            pull_grid, cells_left, cells_right = pull
            jobs += [
                _pull(left, scheme, pull_grid, cells_left, max_rows - len(found.left)),
                _pull(right, scheme, pull_grid, cells_right, max_rows - len(found.right)),
            ]
        results = await all_of(*jobs)
        if pull is not None:
            found.left += results[-2]
            found.right += results[-1]
            pull = None
        if grid is None:
            break
        found.levels += 1
        on_left: dict[int, Check] = results[0]
        on_right: dict[int, Check] = results[1]
        if found.levels == 1:
            found.left_rows = sum(check.count for check in on_left.values())
            found.right_rows = sum(check.count for check in on_right.values())
        differing = {
            c for c in on_left.keys() | on_right.keys() if on_left.get(c) != on_right.get(c)
        }
        if not differing:
            break
        last = grid.atomic or found.levels >= MAX_LEVELS
        small = {
            c
            for c in differing
            if last
            or max(on_left.get(c, _EMPTY).count, on_right.get(c, _EMPTY).count) <= plan.pull_rows
        }
        cells_left = {c for c in small if c in on_left}
        cells_right = {c for c in small if c in on_right}
        _check_budget(left.label, on_left, cells_left, len(found.left), max_rows)
        _check_budget(right.label, on_right, cells_right, len(found.right), max_rows)
        pull = (grid, cells_left, cells_right)
        big = differing - small
        within = (grid, big) if big else None
        grid = grid.refine() if big else None
    return found


def _check_budget(
    label: str, checks: dict[int, Check], cells: set[int], pulled: int, max_rows: int
) -> None:
    wanted = sum(checks[c].count for c in cells)
    if pulled + wanted > max_rows:
        raise ReconcileError(
            f"more than max_rows ({max_rows}) rows of the {label} side are in differing "
            f"ranges: the sides differ too much for a row-level comparison; raise max_rows "
            "or look at the data"
        )


async def _pull(
    side: Side, scheme: Scheme, grid: Grid, cells: set[int], budget: int
) -> list[tuple[Any, ...]]:
    if not cells:
        return []
    return await side.pull(scheme, grid, cells, budget)
