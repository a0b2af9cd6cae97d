"""Compare a keyed data set on two sources and report the exact keys that differ.

Values: `mismatched` (keys on both sides whose values differ beyond tolerance),
`missing_left` and `missing_right` (keys on one side only), `checked` (distinct keys
compared), `pending_grace` (differences not yet counted, see `grace`) and
`rows_transferred` (rows read from both sources). Each counted difference is one
evidence row: `{key: {...}, left: {...} or null, right: {...} or null, kind:
mismatch|missing_left|missing_right, truth: left|right}`, so a repair knows exactly
what to change and from which side.

Large tables are not pulled: each side computes `count(*)` and `sum(hash)` of its rows
inside the database, for the whole table (skipped when it would only precede the
next step), then per key range, and only the rows
of small differing ranges are read (see `agent/reconcile`). Checksums run inside
PostgreSQL, MariaDB/MySQL and DuckDB; SQLite sources and Redis hashes are read whole
(at most `max_rows`) and hashed by the agent.

```yaml
probes:
  - name: stock-drift
    kind: reconcile
    every: 5m
    timeout: 1m
    # The two data sets. Each side is a `source` from `sources:` with a `query`
    # (any SELECT; it is wrapped as a subquery, so it needs no ORDER BY or LIMIT), or
    # a Redis source with `hash`: each field is a key and its value the compared number.
    left: {source: warehouse, query: "SELECT sku, on_hand - reserved AS available FROM stock"}
    right: {source: shop, query: "SELECT sku, available FROM inventory"}
    # The columns that identify a row; each key must appear at most once per side.
    key: [sku]
    # The columns whose values must agree; none means "only check that keys exist".
    compare: [available]
    # How far numbers may differ and still agree: `absolute`, `relative` (0.01 = 1 %
    # of the larger value) or both (either suffices), for every compared column, or
    # per column: `{available: {absolute: 1}, price: {relative: 0.001}}`. Default: exact.
    tolerance: {absolute: 0}
    # Which side holds the truth when they disagree; recorded in every evidence row
    # for the repair that follows.
    truth: left
    # A difference counts only when the same key differed in this many consecutive
    # runs (eventual consistency); 1 counts it at once.
    grace: 2
    # At most this many differing keys are stored as evidence per run (the counts
    # are always complete).
    max_evidence: 100
    # auto: checksums first (whole table, or per key range right away on a first run
    # over 100,000+ integer keys); when they differ, a full comparison for
    # tables up to `full_below` rows and the range checksums above. full: always
    # read both sides whole. checksum: always use checksums.
    mode: auto
    # The most rows read from one side: the whole side on the full path, the rows of
    # differing ranges on the checksum path. More is a failed run, not a partial one.
    max_rows: 100000
    # In auto mode, tables up to this many rows (per side) are compared in full
    # once their checksums differ.
    full_below: 10000
    expect: [mismatched == 0, missing_right == 0]

  - name: cache-stock
    kind: reconcile
    left: {source: shop, query: "SELECT sku, available FROM inventory"}
    right: {source: cache, hash: "stock:available"}
    key: [sku]
    compare: [available]
    truth: left
    expect: [mismatched == 0]
```
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, model_validator

from agent.errors import ProbeError
from agent.probe_spec import ProbeSpec, RunContext, StrictModel
from agent.reconcile import (
    Columns,
    Deadline,
    Difference,
    Plan,
    Previous,
    ReconcileError,
    Side,
    Tolerance,
    apply_grace,
    reconcile,
    redis_side,
    sql_side,
)
from agent.reconcile.values import sort_key, to_json
from agent.results import Observation

# The connectors' own timeouts end a slow query with its reason a little before the
# runner's hard cut would end the run with a bare "timed out".
_DEADLINE_SHARE = 0.95


class SideSpec(StrictModel):
    """One side: a SQL query on a source, or a Redis hash."""

    source: str = Field(description="The source (from `sources:`) to read.")
    query: str | None = Field(
        default=None, description="A SELECT returning key and compared columns."
    )
    hash: str | None = Field(
        default=None, description="A Redis hash: field = key, value = compared value."
    )

    @model_validator(mode="after")
    def _one_of(self) -> SideSpec:
        if (self.query is None) == (self.hash is None):
            raise ValueError(
                "give exactly one of `query` (a SQL source) or `hash` (a Redis source)"
            )
        return self


class ToleranceSpec(StrictModel):
    """How far two numbers may differ and still agree."""

    absolute: float | None = Field(
        default=None, ge=0, description="Largest allowed |left - right|."
    )
    relative: float | None = Field(
        default=None, ge=0, description="Largest allowed |left - right| / max(|left|, |right|)."
    )

    def build(self) -> Tolerance:
        """The engine's form (exact decimals, so 0.1 means 0.1)."""
        return Tolerance(
            None if self.absolute is None else Decimal(repr(self.absolute)),
            None if self.relative is None else Decimal(repr(self.relative)),
        )


class ReconcileSpec(ProbeSpec):
    """A comparison of two keyed data sets."""

    kind: Literal["reconcile"]
    left: SideSpec = Field(description="The first data set.")
    right: SideSpec = Field(description="The second data set.")
    key: list[str] = Field(min_length=1, description="Columns that identify a row.")
    compare: list[str] = Field(default_factory=list, description="Columns whose values must agree.")
    tolerance: ToleranceSpec | dict[str, ToleranceSpec] | None = Field(
        default=None, description="Tolerance for every compared column, or per column."
    )
    truth: Literal["left", "right"] = Field(
        default="left", description="The side that is right when they disagree."
    )
    grace: int = Field(
        default=1, ge=1, description="Consecutive runs a difference must last to count."
    )
    max_evidence: int = Field(default=100, ge=0, description="Differing keys stored per run.")
    mode: Literal["auto", "full", "checksum"] = Field(
        default="auto", description="auto, full (read both sides) or checksum."
    )
    max_rows: int = Field(default=100_000, ge=1, description="Most rows read from one side.")
    full_below: int = Field(
        default=10_000, ge=0, description="In auto mode, compare up to this many rows in full."
    )

    @model_validator(mode="after")
    def _columns(self) -> ReconcileSpec:
        both = self.key + self.compare
        repeated = sorted({c for c in both if both.count(c) > 1})
        if repeated:
            raise ValueError(f"column {repeated[0]!r} is listed twice in key/compare")
        if isinstance(self.tolerance, dict):
            unknown = sorted(set(self.tolerance) - set(self.compare))
            if unknown:
                raise ValueError(f"tolerance for {unknown[0]!r}, which is not in `compare`")
        for label, side in (("left", self.left), ("right", self.right)):
            if side.hash is not None and (len(self.key) != 1 or len(self.compare) > 1):
                raise ValueError(
                    f"{label} is a Redis hash: it holds one key column and at most one compared column"
                )
        return self

    def tolerances(self) -> tuple[Tolerance, ...]:
        """One tolerance per compared column."""
        if self.tolerance is None:
            return tuple(Tolerance() for _ in self.compare)
        if isinstance(self.tolerance, ToleranceSpec):
            shared = self.tolerance.build()
            return tuple(shared for _ in self.compare)
        per_column = self.tolerance
        return tuple(
            per_column[c].build() if c in per_column else Tolerance() for c in self.compare
        )


async def run(spec: ReconcileSpec, ctx: RunContext) -> Observation:
    """Compare both sides, apply the grace window, and report counts and evidence."""
    deadline = Deadline.after(spec.timeout.total_seconds() * _DEADLINE_SHARE)
    columns = Columns(tuple(spec.key), tuple(spec.compare))
    # Kept between runs: grace streaks per key, and what the last run saw (whether to
    # start with the whole-table checksums, see agent/reconcile/engine.py).
    state = ctx.state.setdefault(spec.name, {})
    plan = Plan(
        key=columns.key,
        compare=columns.compare,
        tolerances=spec.tolerances(),
        mode=spec.mode,
        max_rows=spec.max_rows,
        full_below=spec.full_below,
        previous=state.get("previous"),
    )
    try:
        left = _side("left", spec.left, spec, ctx, columns, deadline)
        right = _side("right", spec.right, spec, ctx, columns, deadline)
        outcome = await reconcile(left, right, plan)
    except (ReconcileError, ProbeError) as exc:
        return Observation(error=str(exc))

    state["previous"] = Previous(outcome.rows, differed=bool(outcome.differences))
    graced = apply_grace(outcome.differences, state.get("streaks", {}), spec.grace)
    state["streaks"] = graced.streaks
    counts = {kind: 0 for kind in ("mismatch", "missing_left", "missing_right")}
    for difference in graced.counted:
        counts[difference.kind] += 1
    values = {
        "mismatched": counts["mismatch"],
        "missing_left": counts["missing_left"],
        "missing_right": counts["missing_right"],
        "checked": outcome.checked,
        "pending_grace": len(graced.pending),
        "rows_transferred": outcome.rows_transferred,
    }
    shown = sorted(graced.counted, key=lambda d: sort_key(d.key))[: spec.max_evidence]
    return Observation(
        values=values,
        detail=_detail(values, outcome.path),
        evidence=[_evidence(d, spec) for d in shown],
    )


def _side(
    label: str,
    side: SideSpec,
    spec: ReconcileSpec,
    ctx: RunContext,
    columns: Columns,
    deadline: Deadline,
) -> Side:
    connector = ctx.connector(side.source)
    if side.hash is not None:
        if connector.dialect != "redis":
            raise ReconcileError(
                f"{label}: source {side.source!r} is {connector.dialect}; `hash` needs a Redis source"
            )
        return redis_side(
            label, side.source, connector, side.hash, columns, deadline, spec.max_rows
        )
    if connector.dialect == "redis":
        raise ReconcileError(
            f"{label}: source {side.source!r} is redis; read a Redis hash with `hash:` instead of `query:`"
        )
    assert side.query is not None
    return sql_side(label, side.source, connector, side.query, columns, deadline, spec.max_rows)


def _evidence(difference: Difference, spec: ReconcileSpec) -> dict[str, Any]:
    def named(names: list[str], row: tuple[Any, ...] | None) -> dict[str, Any] | None:
        return None if row is None else {n: to_json(v) for n, v in zip(names, row, strict=True)}

    return {
        "key": named(spec.key, difference.key),
        "left": named(spec.compare, difference.left),
        "right": named(spec.compare, difference.right),
        "kind": difference.kind,
        "truth": spec.truth,
    }


def _detail(values: dict[str, Any], path: str) -> str:
    compared = (
        f"{values['checked']:,} keys compared ({path}, {values['rows_transferred']:,} rows read)"
    )
    found = [
        f"{values['mismatched']:,} mismatched" if values["mismatched"] else "",
        f"{values['missing_right']:,} missing on the right" if values["missing_right"] else "",
        f"{values['missing_left']:,} missing on the left" if values["missing_left"] else "",
        f"{values['pending_grace']:,} within grace" if values["pending_grace"] else "",
    ]
    found = [part for part in found if part]
    return f"{compared}: {', '.join(found)}" if found else f"{compared}: all agree"


SPEC = ReconcileSpec
