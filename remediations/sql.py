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
    mode: approval
    max_rows: 50
```
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from agent.connectors import SourceError
from agent.connectors.writes import Statement, TooManyRows, execute_in_transaction
from agent.probe_spec import RunContext
from remediations._base import ActionResult, Plan, RemediationSpec, Target


class SqlSpec(RemediationSpec):
    """A SQL statement that repairs data."""

    kind: Literal["sql"]
    source: str = Field(description="The source to write.")
    statement: str = Field(
        min_length=1, description="One SQL statement; :name binds evidence fields."
    )
    per_row: bool = Field(default=False, description="Run once per evidence row of the incident.")


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


async def plan(spec: SqlSpec, target: Target, ctx: RunContext) -> Plan:
    """Run the statements in a rolled-back transaction and count the rows they touch."""
    todo = statements(spec, target)
    detail: dict[str, Any] = {
        "source": spec.source,
        "statement": spec.statement,
        "params": [s.params for s in todo if s.params is not None],
    }
    try:
        counts = await execute_in_transaction(
            spec.source,
            ctx.sources[spec.source],
            todo,
            max_rows=spec.max_rows,
            timeout=spec.timeout.total_seconds(),
            commit=False,
            base_dir=ctx.base_dir,
        )
        detail["rows"] = sum(counts)
        summary = f"{len(todo)} statements on {spec.source} would touch {sum(counts)} rows"
    except TooManyRows as exc:
        detail["rows"] = exc.touched
        summary = f"would touch more than {spec.max_rows} rows (at least {exc.touched})"
    except SourceError as exc:
        detail["rows"] = 0
        detail["error"] = str(exc)
        summary = f"the dry run failed: {exc}"
    return Plan(spec.name, "sql", target.key, summary, detail=detail)


async def run(spec: SqlSpec, plan: Plan, ctx: RunContext) -> ActionResult:
    """Run the statements and commit, unless they touch more than `max_rows`."""
    params: list[dict[str, Any]] = plan.detail.get("params") or []
    todo = (
        [Statement(spec.statement, p) for p in params]
        if spec.per_row
        else [Statement(spec.statement)]
    )
    try:
        counts = await execute_in_transaction(
            spec.source,
            ctx.sources[spec.source],
            todo,
            max_rows=spec.max_rows,
            timeout=spec.timeout.total_seconds(),
            base_dir=ctx.base_dir,
        )
    except SourceError as exc:
        return ActionResult(False, str(exc), error=str(exc))
    return ActionResult(True, f"{len(todo)} statements touched {sum(counts)} rows")


SPEC = SqlSpec
