"""Run a SQL statement on a source, once or once per evidence row, in one transaction.

With `per_row: true` the statement runs once for each evidence row of the incident,
its parameters bound from the row (`:id`, `:order_id`; nested fields of reconcile
evidence as `:key_sku`, `:left_available`); values are never formatted into the SQL.
The plan runs the same statements in a transaction that is always rolled back and
reports how many rows they touch; the run commits them, and more than `max_rows`
touched rows rolls everything back.

```yaml
remediations:
  - name: requeue-payments
    kind: sql
    # The source (from `sources:`) to write; PostgreSQL, MariaDB/MySQL or SQLite.
    source: shop
    # One statement, with :name placeholders for the evidence row's fields.
    statement: "UPDATE payments SET status = 'queued' WHERE id = :id AND status = 'pending'"
    # true: once per evidence row; false: once, without parameters.
    per_row: true
    # Optional, with per_row: record each row's values before and after (so the run
    # can be undone): the table, its key columns -> evidence fields, and the columns.
    capture: {table: payments, key: {id: id}, columns: [status]}
    mode: approval
    max_rows: 50
```
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from agent.connectors import SourceError, SqlDialect
from agent.connectors.writes import Statement, TooManyRows, write_transaction
from agent.probe_spec import RunContext, StrictModel
from remediations._base import ActionResult, Change, Plan, RemediationSpec, Target
from remediations._rows import exact, select_sql


class CaptureSpec(StrictModel):
    """The rows a per-row statement changes, to record their before- and after-values."""

    table: str = Field(description="The table the statement changes.")
    key: dict[str, str] = Field(min_length=1, description="Table key column -> evidence field.")
    columns: list[str] = Field(min_length=1, description="The columns whose values to record.")


class SqlSpec(RemediationSpec):
    """A SQL statement that repairs data."""

    kind: Literal["sql"]
    source: str = Field(description="The source to write.")
    statement: str = Field(
        min_length=1, description="One SQL statement; :name binds evidence fields."
    )
    per_row: bool = Field(default=False, description="Run once per evidence row of the incident.")
    capture: CaptureSpec | None = Field(
        default=None, description="Record before/after values of the changed rows (undoable)."
    )

    @property
    def acts_on_evidence(self) -> bool:
        """Per-row statements act on the incident's evidence."""
        return self.per_row

    @model_validator(mode="after")
    def _capture_needs_rows(self) -> SqlSpec:
        if self.capture is not None and not self.per_row:
            raise ValueError(
                "`capture` needs `per_row: true` (the key comes from each evidence row)"
            )
        return self


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    """An evidence row as flat parameters: nested `{key: {sku: 1}}` becomes `key_sku`."""
    flat: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, dict):
            for inner, item in flatten(value).items():
                flat[f"{name}_{inner}"] = item
        else:
            flat[name] = value
    return flat


def statements(spec: SqlSpec, target: Target) -> list[Statement]:
    """The statements one run executes."""
    if not spec.per_row:
        return [Statement(spec.statement)]
    return [Statement(spec.statement, flatten(row)) for row in target.evidence]


async def _apply(
    spec: SqlSpec, todo: list[Statement], ctx: RunContext, *, commit: bool
) -> tuple[list[int], list[Change]]:
    """Run the statements in one transaction; the touched counts and captured changes."""
    counts: list[int] = []
    changes: list[Change] = []
    source = ctx.sources[spec.source]
    dialect: SqlDialect = source.kind  # type: ignore[assignment]
    capture = spec.capture
    async with write_transaction(
        spec.source,
        source,
        max_rows=spec.max_rows,
        timeout=spec.timeout.total_seconds(),
        commit=commit,
        base_dir=ctx.base_dir,
    ) as tx:
        for statement in todo:
            if capture is None:
                counts.append(await tx.execute(statement.sql, statement.params))
                continue
            params = dict(statement.params or {})
            key = {column: params.get(field) for column, field in capture.key.items()}
            read, read_params = select_sql(capture.table, key, capture.columns, dialect)
            before = await tx.fetch(read, read_params, max_rows=2)
            counts.append(await tx.execute(statement.sql, statement.params))
            after = await tx.fetch(read, read_params, max_rows=2)
            if len(before.rows) == 1 and len(after.rows) == 1 and before.rows != after.rows:
                changes.append(
                    Change(
                        spec.source,
                        capture.table,
                        key,
                        {c: exact(v) for c, v in zip(before.columns, before.rows[0], strict=True)},
                        {c: exact(v) for c, v in zip(after.columns, after.rows[0], strict=True)},
                    )
                )
    return counts, changes


async def plan(spec: SqlSpec, target: Target, ctx: RunContext) -> Plan:
    """Run the statements in a rolled-back transaction and count the rows they touch."""
    todo = statements(spec, target)
    detail: dict[str, Any] = {
        "source": spec.source,
        "statement": spec.statement,
        "params": [s.params for s in todo if s.params is not None],
    }
    changes: list[Change] = []
    try:
        counts, changes = await _apply(spec, todo, ctx, commit=False)
        detail["rows"] = sum(counts)
        summary = f"{len(todo)} statements on {spec.source} would touch {sum(counts)} rows"
    except TooManyRows as exc:
        detail["rows"] = exc.touched
        summary = f"would touch more than {spec.max_rows} rows (at least {exc.touched})"
    except SourceError as exc:
        detail["rows"] = 0
        detail["error"] = str(exc)
        summary = f"the dry run failed: {exc}"
    return Plan(spec.name, "sql", target.key, summary, changes=changes, detail=detail)


async def run(spec: SqlSpec, plan: Plan, ctx: RunContext) -> ActionResult:
    """Run the statements and commit, unless they touch more than `max_rows`."""
    params: list[dict[str, Any]] = plan.detail.get("params") or []
    todo = (
        [Statement(spec.statement, p) for p in params]
        if spec.per_row
        else [Statement(spec.statement)]
    )
    try:
        counts, changes = await _apply(spec, todo, ctx, commit=True)
    except SourceError as exc:
        return ActionResult(False, str(exc), error=str(exc))
    return ActionResult(True, f"{len(todo)} statements touched {sum(counts)} rows", changes=changes)


SPEC = SqlSpec
