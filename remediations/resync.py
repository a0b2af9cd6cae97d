"""Copy the source-of-truth side's values to the other side, for exactly the drifted keys.

For an incident of a `reconcile` probe: each `mismatch` evidence row names a key and
both sides' values; the side named by `truth` is right. The plan reads the other side's
current row for each drifted key (the before-values) and records the change to the
truth's values (the after-values); keys that agree again by now are left out. The run
applies every change in one transaction, re-checking each row's before-value under a
row lock, so a row changed since the plan is never overwritten; more than `max_rows`
rows is refused and rolled back. The before-values make the run undoable. When the
other side is a Redis hash (`hash:`), the fields of the drifted keys are set in one
Lua script that first checks every before-value (atomic, all or nothing).

The reconcile query may be an expression (`on_hand - reserved AS available`), so the
table to write and its column names are given here. Keys missing on one side are
reported as skipped (inserting or deleting rows is not a resync).

```yaml
remediations:
  - name: resync-stock
    kind: resync
    # The table on the side that is not the truth (the side the reconcile probe's
    # `truth` does not name). Default: the table of that side's query when the query
    # is a plain `SELECT columns FROM table`; needed when it is anything more.
    table: inventory
    # Compared column (as the reconcile probe names it) -> column of `table`; a column
    # not listed has the same name in the table.
    columns: {available: available}
    # Key column -> column of `table`, when they differ.
    key_columns: {sku: sku}
    # The source to write; default: the probe's non-truth side's source.
    source: null
    mode: auto
    max_rows: 500
    cooldown: 10m
    max_attempts: 3 per 1h
```
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from agent.connectors import RedisConnector, SourceError, SqlDialect
from agent.errors import RemediationRefused
from agent.probe_spec import RunContext
from probes.reconcile import ReconcileSpec
from remediations._base import ActionResult, Change, Plan, RemediationSpec, Target
from remediations._hash import as_text, read_field
from remediations._rows import apply_changes, exact, same, select_sql


class ResyncSpec(RemediationSpec):
    """Repair drift found by a reconcile probe from its source of truth."""

    kind: Literal["resync"]
    table: str | None = Field(
        default=None,
        description="The table to write on the non-truth side; default: the table of that "
        "side's query when it is a plain `SELECT columns FROM table`.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Compared column -> table column, when they differ."
    )
    key_columns: dict[str, str] = Field(
        default_factory=dict, description="Key column -> table column, when they differ."
    )
    source: str | None = Field(
        default=None, description="The source to write; default: the non-truth side's source."
    )

    @property
    def acts_on_evidence(self) -> bool:
        """A resync repairs exactly the incident's drifted keys."""
        return True


_PLAIN = re.compile(
    r"^\s*SELECT\s+[A-Za-z_][A-Za-z0-9_]*(\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*\s+"
    r"FROM\s+(?P<table>[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?)\s*;?\s*$",
    re.I,
)


def plain_table(query: str) -> str | None:
    """The table of `SELECT a, b FROM t` (plain columns, no clauses); None otherwise."""
    match = _PLAIN.match(query)
    return match["table"] if match else None


async def plan(spec: ResyncSpec, target: Target, ctx: RunContext) -> Plan:
    """The changes: for each drifted key, the row's current values and the truth's."""
    probe = target.probe
    if not isinstance(probe, ReconcileSpec):
        raise RemediationRefused(f"{spec.name}: resync repairs reconcile incidents only")
    other = probe.right if probe.truth == "left" else probe.left
    source = spec.source or other.source
    connector = ctx.connector(source)
    if connector.dialect == "redis":
        if other.hash is None:
            raise RemediationRefused(
                f"{spec.name}: source {source!r} is Redis but the side is not a hash"
            )
        return await _plan_hash(spec, target, probe, source, connector, other.hash)
    dialect: SqlDialect = connector.dialect
    table = spec.table or plain_table(other.query or "")
    if table is None:
        raise RemediationRefused(
            f"{spec.name}: the {'right' if probe.truth == 'left' else 'left'} query is not a plain "
            "`SELECT columns FROM table`: set `table` (and `columns`)"
        )
    changes: list[Change] = []
    skipped: list[str] = []
    drifted = [row for row in target.evidence if row.get("kind") == "mismatch"]
    for row in target.evidence:
        if row.get("kind") != "mismatch":
            skipped.append(
                f"{row.get('key')}: {row.get('kind')} (resync changes existing rows only)"
            )
    for row in drifted:
        if len(changes) > spec.max_rows:
            break  # enough to be refused; the rest is not read
        truth_values: dict[str, Any] = row[probe.truth] or {}
        key = {spec.key_columns.get(k, k): v for k, v in (row["key"] or {}).items()}
        wanted = {spec.columns.get(c, c): truth_values.get(c) for c in probe.compare}
        try:
            sql, params = select_sql(table, key, list(wanted), dialect)
            found = await connector.fetch(
                sql, params, max_rows=2, timeout=spec.timeout.total_seconds()
            )
        except SourceError as exc:
            raise RemediationRefused(f"{spec.name}: cannot read {table}: {exc}") from None
        if len(found.rows) != 1:
            skipped.append(f"{row['key']}: {len(found.rows)} rows in {table}, expected 1")
            continue
        current = dict(zip(found.columns, found.rows[0], strict=True))
        before = {c: exact(current[c]) for c in wanted}
        if all(same(before[c], wanted[c]) for c in wanted):
            skipped.append(f"{row['key']}: agrees again")
            continue
        changes.append(Change(source, table, key, before, wanted))
    summary = f"copy {probe.truth} values to {table} on {source} for {len(changes)} drifted keys"
    return Plan(
        remediation=spec.name,
        kind="resync",
        target=target.key,
        summary=summary,
        changes=changes,
        detail={"drifted": len(drifted), "source": source, "table": table},
        skipped=skipped,
    )


async def _plan_hash(
    spec: ResyncSpec,
    target: Target,
    probe: ReconcileSpec,
    source: str,
    connector: RedisConnector,
    hash_key: str,
) -> Plan:
    """The changes to a Redis hash: field = the key, value = the truth's compared value."""
    changes: list[Change] = []
    skipped: list[str] = []
    drifted = [row for row in target.evidence if row.get("kind") == "mismatch"]
    skipped += [
        f"{r.get('key')}: {r.get('kind')} (resync changes existing rows only)"
        for r in target.evidence
        if r.get("kind") != "mismatch"
    ]
    (key_column,) = probe.key
    (column,) = probe.compare
    for row in drifted:
        if len(changes) > spec.max_rows:
            break
        field = as_text(row["key"][key_column])
        wanted = as_text((row[probe.truth] or {}).get(column))
        try:
            before = await read_field(connector, hash_key, field, spec.timeout.total_seconds())
        except SourceError as exc:
            raise RemediationRefused(f"{spec.name}: cannot read {hash_key}: {exc}") from None
        if before is None:
            skipped.append(f"{field}: not in {hash_key}")
        elif same(before, wanted):
            skipped.append(f"{field}: agrees again")
        else:
            changes.append(
                Change(source, hash_key, {"field": field}, {"value": before}, {"value": wanted})
            )
    return Plan(
        remediation=spec.name,
        kind="resync",
        target=target.key,
        summary=f"copy {probe.truth} values to hash {hash_key} on {source} for {len(changes)} drifted keys",
        changes=changes,
        detail={"drifted": len(drifted), "source": source, "hash": hash_key},
        skipped=skipped,
    )


async def run(spec: ResyncSpec, plan: Plan, ctx: RunContext) -> ActionResult:
    """Apply the planned changes in one transaction (all or nothing)."""
    if not plan.changes:
        return ActionResult(True, "nothing to change")
    source = str(plan.detail["source"])
    return await apply_changes(
        source, plan.changes, ctx, max_rows=spec.max_rows, timeout=spec.timeout.total_seconds()
    )


SPEC = ResyncSpec
