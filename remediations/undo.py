"""The reverse of a run that recorded before-values (`resync`, row changes).

`reverse(plan)` is a new plan whose changes swap before and after: applied, it puts
back exactly the values the run replaced, and refuses (rolls back) a row that changed
again since the run. It is an ordinary plan, so an undo goes through the same guard
(mode, lock, limits, approval) as any other run.
"""

from __future__ import annotations

from agent.errors import RemediationRefused
from agent.probe_spec import RunContext
from remediations._base import ActionResult, Change, Plan
from remediations._rows import apply_changes


def reverse(plan: Plan, *, run_id: int | None = None) -> Plan:
    """The plan that undoes `plan`'s changes; RemediationRefused when there is nothing to undo."""
    if not plan.changes:
        raise RemediationRefused(f"{plan.remediation} recorded no before-values: nothing to undo")
    changes = [
        Change(c.source, c.table, dict(c.key), before=dict(c.after), after=dict(c.before))
        for c in reversed(plan.changes)
    ]
    of = f"run {run_id}" if run_id is not None else plan.summary
    return Plan(
        remediation=plan.remediation,
        kind=plan.kind,
        target=plan.target,
        summary=f"undo {of}: restore {len(changes)} rows",
        changes=changes,
        detail={"undo_of": run_id},
        targets=plan.targets,
    )


async def run(plan: Plan, ctx: RunContext, *, max_rows: int, timeout: float) -> ActionResult:  # noqa: ASYNC109
    """Apply an undo plan (all changes on one source, one transaction)."""
    sources = {c.source for c in plan.changes}
    if len(sources) != 1:
        return ActionResult(False, "an undo spans one source", error="changes span several sources")
    return await apply_changes(sources.pop(), plan.changes, ctx, max_rows=max_rows, timeout=timeout)
