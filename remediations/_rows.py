"""Row changes on a SQL source: read the before-values, and apply changes exactly.

Shared by `resync` (and its undo, which is the same changes reversed). Applying a
change re-reads the row inside the write transaction (locked with FOR UPDATE where the
dialect has it) and refuses when it no longer holds the planned before-value: a row
someone changed since the plan is never overwritten blindly.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from agent.connectors import SourceError, SqlDialect
from agent.connectors.writes import TooManyRows, quote_identifier, write_transaction
from agent.errors import RemediationFailed
from agent.probe_spec import RunContext
from agent.reconcile.values import to_json
from remediations._base import ActionResult, Change


def exact(value: Any) -> Any:
    """A database value for a stored plan, exact: decimals as their text, the rest as JSON."""
    if isinstance(value, Decimal):
        return str(value)
    return to_json(value)


def same(a: Any, b: Any) -> bool:
    """Whether two values are equal, numbers compared exactly whatever their type."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a == b)
    try:
        return Decimal(str(a)) == Decimal(str(b))
    except (InvalidOperation, ValueError):
        return str(a) == str(b)


def where(key: dict[str, Any], dialect: SqlDialect) -> tuple[str, dict[str, Any]]:
    """`"k1" = :k0 AND ...` and its params for one key."""
    parts, params = [], {}
    for i, (column, value) in enumerate(key.items()):
        parts.append(f"{quote_identifier(column, dialect)} = :k{i}")
        params[f"k{i}"] = value
    return " AND ".join(parts), params


def select_sql(
    table: str, key: dict[str, Any], columns: Sequence[str], dialect: SqlDialect
) -> tuple[str, dict[str, Any]]:
    """A SELECT of `columns` of the row with `key`."""
    condition, params = where(key, dialect)
    listed = ", ".join(quote_identifier(c, dialect) for c in columns)
    return f"SELECT {listed} FROM {quote_identifier(table, dialect)} WHERE {condition}", params


async def apply_changes(
    source: str,
    changes: Sequence[Change],
    ctx: RunContext,
    *,
    max_rows: int,
    timeout: float,  # noqa: ASYNC109
) -> ActionResult:
    """Apply `changes` in one transaction on `source`; all or nothing."""
    spec = ctx.sources[source]
    if spec.kind == "redis":
        from remediations._hash import apply_hash_changes

        return await apply_hash_changes(source, changes, ctx, max_rows=max_rows, timeout=timeout)
    dialect: SqlDialect = spec.kind
    lock = "" if dialect == "sqlite" else " FOR UPDATE"
    try:
        async with write_transaction(
            source, spec, max_rows=max_rows, timeout=timeout, base_dir=ctx.base_dir
        ) as tx:
            for change in changes:
                sql, params = select_sql(change.table, change.key, list(change.before), dialect)
                found = await tx.fetch(sql + lock, params, max_rows=2)
                if len(found.rows) != 1:
                    raise RemediationFailed(f"row {change.key} is gone or not unique: rolled back")
                current = dict(zip(found.columns, found.rows[0], strict=True))
                for column, planned in change.before.items():
                    if not same(current.get(column), planned):
                        raise RemediationFailed(
                            f"row {change.key} changed since the plan ({column}: "
                            f"{exact(current.get(column))!r}, planned {planned!r}): rolled back"
                        )
                condition, params = where(change.key, dialect)
                sets = []
                for i, (column, value) in enumerate(change.after.items()):
                    sets.append(f"{quote_identifier(column, dialect)} = :v{i}")
                    params[f"v{i}"] = value
                table = quote_identifier(change.table, dialect)
                touched = await tx.execute(
                    f"UPDATE {table} SET {', '.join(sets)} WHERE {condition}", params
                )
                if touched != 1:
                    raise RemediationFailed(f"row {change.key}: {touched} rows updated, expected 1")
    except TooManyRows as exc:
        return ActionResult(False, str(exc), error=str(exc))
    except (RemediationFailed, SourceError) as exc:
        return ActionResult(False, str(exc), error=str(exc))
    tables = sorted({c.table for c in changes})
    return ActionResult(
        True,
        f"updated {len(changes)} rows in {', '.join(tables) or 'no table'}",
        changes=list(changes),
    )
