"""Call a Python entry point `module:function` with a typed context.

The function receives one `PythonContext` (the remediation's `args`, the target with
its evidence, the plan, and the agent's run context for sources and HTTP clients) and
may be a plain or an async function. It returns an `ActionResult`, or `True`/`None`
for success, `False` for failure, or a string (success, the string as output). An
exception is a failed run with its message. The entry point is imported when the
plan is made, so a typo is found before anything runs.

```yaml
remediations:
  - name: rebuild-search-index
    kind: python
    # The function to call, as `package.module:function`.
    entry: shop_ops.repairs:rebuild_index
    # Arguments passed in `ctx.args`.
    args: {batch: 500}
    mode: approval
    timeout: 2m
```
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator

from agent.errors import RemediationRefused
from agent.probe_spec import RunContext
from remediations._base import ActionResult, Plan, RemediationSpec, Target, truncate


@dataclass(frozen=True)
class PythonContext:
    """What an entry point receives."""

    args: dict[str, Any]
    target: Target
    plan: Plan
    run: RunContext


class PythonSpec(RemediationSpec):
    """A Python function that repairs something."""

    kind: Literal["python"]
    entry: str = Field(description="`module:function` to call.")
    args: dict[str, Any] = Field(default_factory=dict, description="Arguments in `ctx.args`.")

    @field_validator("entry")
    @classmethod
    def _entry_shape(cls, value: str) -> str:
        module, sep, function = value.partition(":")
        if not sep or not module or not function.isidentifier():
            raise ValueError(f"invalid entry {value!r}: expected `package.module:function`")
        return value


def resolve(entry: str) -> Callable[[PythonContext], Any]:
    """The function named by `entry`; RemediationRefused when it cannot be found."""
    module_name, _, function = entry.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        raise RemediationRefused(f"entry point {entry!r} not found: {exc}") from None
    if not callable(found):
        raise RemediationRefused(f"entry point {entry!r} is not callable")
    return found  # type: ignore[no-any-return]


async def plan(spec: PythonSpec, target: Target, ctx: RunContext) -> Plan:
    """The call that would be made; the entry point is imported, not called."""
    resolve(spec.entry)
    return Plan(
        spec.name,
        "python",
        target.key,
        f"call {spec.entry}",
        detail={"entry": spec.entry, "args": sorted(spec.args)},
    )


async def run(spec: PythonSpec, plan: Plan, ctx: RunContext) -> ActionResult:
    """Call the entry point within the timeout."""
    function = resolve(spec.entry)
    context = PythonContext(dict(spec.args), Target(plan.target), plan, ctx)
    try:
        async with asyncio.timeout(spec.timeout.total_seconds()):
            answer = function(context)
            if inspect.isawaitable(answer):
                answer = await answer
    except TimeoutError:
        return ActionResult(
            False, "timed out", error=f"{spec.entry} did not return within {spec.timeout}"
        )
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return ActionResult(False, reason, error=reason)
    if isinstance(answer, ActionResult):
        return answer
    if answer is False:
        return ActionResult(False, f"{spec.entry} returned False", error="returned False")
    output = truncate(answer, 16384) if isinstance(answer, str) else ""
    return ActionResult(True, f"{spec.entry} returned", output)


SPEC = PythonSpec
