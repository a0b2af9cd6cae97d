"""One reconciliation run: choose the path, run it, and say what differs.

    sample both sides ──► agree on each column's hash kind
        │ (kinds that cannot hash alike, or two local sides: full path)
    min/max of an integer key (from its index) ──► the key range, to size the cells
        │
    whole-table count + sum(hash) per side ──► equal: done, one scan per side
        │ differ         (skipped when it would only precede the cells: see `reconcile`)
    both sides at most `full_below` rows ──► full path (auto mode)
        │
    checksum levels (checksum.locate) ──► the rows of differing cells ──► compare

The full path reads both sides whole (refusing more than `max_rows` per side) and
compares them in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.reconcile.checksum import first_grid, locate
from agent.reconcile.compare import (
    Difference,
    ReconcileError,
    Tolerance,
    differences,
    keyed,
)
from agent.reconcile.concurrency import all_of
from agent.reconcile.sides import Scheme, Side, Summary
from agent.reconcile.values import IncompatibleKinds, agree, column_kind

Mode = Literal["auto", "full", "checksum"]
# A fresh run (no previous one) over at least this many integer keys starts at the
# cells: their first level says "equal" as well as the whole-table pass would, at about
# the cost of one scan, and saves a second scan when the sides differ (see `reconcile`).
CELLS_FIRST_KEYS = 100_000
# The row count of a fresh run that starts at the cells is not known yet; the key
# span stands in for it (exact for dense keys), capped so that sparse keys over a huge
# span still get at most ~2 * sqrt(ESTIMATE_CAP) = 20,000 first-level cells.
ESTIMATE_CAP = 100_000_000
Path = Literal["full", "checksum"]


@dataclass(frozen=True)
class Previous:
    """What the last run saw: rows on the larger side, and whether anything differed."""

    rows: int
    differed: bool


@dataclass(frozen=True)
class Plan:
    """What to compare and how.

    `tolerances` has one entry per compared column. `max_rows` bounds the rows read
    from each side: all of them on the full path, those of differing cells on the
    checksum path.
    """

    key: tuple[str, ...]
    compare: tuple[str, ...]
    tolerances: tuple[Tolerance, ...]
    mode: Mode = "auto"
    max_rows: int = 100_000
    full_below: int = 10_000
    previous: Previous | None = None


@dataclass(frozen=True)
class Outcome:
    """The result of a run, before grace windows are applied."""

    differences: list[Difference]
    checked: int  # distinct keys compared (on either side)
    rows: int  # rows on the larger side, for the next run's `Previous`
    path: Path
    rows_transferred: int
    queries: int
    levels: int = 0  # checksum levels walked (0: the whole-table checksums agreed, or full path)


async def reconcile(left: Side, right: Side, plan: Plan) -> Outcome:
    """Compare `left` and `right`; ReconcileError with a one-line reason when it cannot."""
    if plan.mode == "full":
        return await _full(left, right, plan, None)
    sample_left, sample_right = await all_of(left.sample(), right.sample())
    scheme, why_not = _scheme(sample_left, sample_right, plan)
    if plan.mode == "checksum" and scheme is None:
        raise ReconcileError(f"mode checksum is not possible: {why_not}; use mode: full")
    if scheme is None or (left.local and right.local and plan.mode == "auto"):
        return await _full(left, right, plan, why_not)

    previous = plan.previous
    if (
        previous is not None
        and previous.differed
        and plan.mode == "auto"
        and previous.rows <= plan.full_below
    ):
        return await _full(left, right, plan, None)  # small, and differed: no checksums
    key_range = scheme.integer_key
    side_bounds: list[tuple[int | None, int | None]] = [(None, None), (None, None)]
    if key_range:
        # The key's index answers min/max at once; the range sizes the cells and cuts
        # a side's scans into concurrent key-range parts.
        side_bounds = await all_of(left.bounds(), right.bounds())
    (lo_l, hi_l), (lo_r, hi_r) = side_bounds
    span = _span(lo_l, hi_l, lo_r, hi_r)
    if previous is not None and previous.differed:
        # Differences seen in the last run usually persist (a grace window even waits
        # for that), and the first level's cell checksums answer "do they differ?" as
        # well: a separate whole-table pass would be a wasted scan.
        s_left = Summary(previous.rows, 0, lo_l, hi_l)
        s_right = Summary(previous.rows, 0, lo_r, hi_r)
    elif previous is None and span >= CELLS_FIRST_KEYS:
        # A fresh run knows nothing of the sides: starting at the cells costs one
        # grouped scan per side whether or not they differ, where the whole-table pass
        # costs a (cheaper) plain scan when they agree but two scans when they differ.
        # The rows are not counted yet: the key span stands in for them.
        estimate = min(span, ESTIMATE_CAP)
        s_left = Summary(estimate, 0, lo_l, hi_l)
        s_right = Summary(estimate, 0, lo_r, hi_r)
    else:
        s_left, s_right = await all_of(
            left.summary(scheme, bounds=side_bounds[0] if key_range else None),
            right.summary(scheme, bounds=side_bounds[1] if key_range else None),
        )
        if (s_left.count, s_left.total) == (s_right.count, s_right.total):
            return _outcome([], s_left.count, s_left.count, "checksum", left, right)
        if plan.mode == "auto" and max(s_left.count, s_right.count) <= plan.full_below:
            return await _full(left, right, plan, None)

    found = await locate(left, right, scheme, first_grid(scheme, s_left, s_right), plan.max_rows)
    width = len(plan.key)
    diffs = differences(
        keyed(found.left, width, left.label),
        keyed(found.right, width, right.label),
        plan.tolerances,
    )
    only_right = sum(1 for d in diffs if d.kind == "missing_left")
    checked = found.left_rows + only_right
    rows = max(found.left_rows, found.right_rows)
    return _outcome(diffs, checked, rows, "checksum", left, right, found.levels)


async def _full(left: Side, right: Side, plan: Plan, why_not: str | None) -> Outcome:
    rows_left, rows_right = await all_of(
        left.all_rows(plan.max_rows), right.all_rows(plan.max_rows)
    )
    for side, rows in ((left, rows_left), (right, rows_right)):
        if rows is None:
            advice = (
                f"checksum mode cannot be used ({why_not})"
                if why_not
                else "use mode: checksum (or auto)"
            )
            raise ReconcileError(
                f"the {side.label} side has more than max_rows ({plan.max_rows}) rows to read "
                f"in full: {advice}, or raise max_rows"
            )
    assert rows_left is not None and rows_right is not None
    width = len(plan.key)
    by_left = keyed(rows_left, width, left.label)
    by_right = keyed(rows_right, width, right.label)
    checked = len(by_left.keys() | by_right.keys())
    diffs = differences(by_left, by_right, plan.tolerances)
    return _outcome(diffs, checked, max(len(by_left), len(by_right)), "full", left, right)


def _span(*bounds: int | None) -> int:
    """How many key values the sides' ranges cover together (0 when both are empty)."""
    known = [b for b in bounds if b is not None]
    return max(known) - min(known) + 1 if known else 0


def _scheme(
    left: list[tuple[object, ...]], right: list[tuple[object, ...]], plan: Plan
) -> tuple[Scheme | None, str | None]:
    """The agreed hash kinds, or None and the reason no checksum is possible."""
    kinds = []
    for index, column in enumerate(plan.key + plan.compare):
        try:
            kinds.append(agree(column_kind(left, index), column_kind(right, index)))
        except IncompatibleKinds as exc:
            return None, f"column {column!r}: {exc}"
    width = len(plan.key)
    return Scheme(tuple(kinds[:width]), tuple(kinds[width:])), None


def _outcome(
    diffs: list[Difference],
    checked: int,
    rows: int,
    path: Path,
    left: Side,
    right: Side,
    levels: int = 0,
) -> Outcome:
    return Outcome(
        differences=diffs,
        checked=checked,
        rows=rows,
        path=path,
        rows_transferred=left.rows_transferred + right.rows_transferred,
        queries=left.queries + right.queries,
        levels=levels,
    )
