"""Row changes on a Redis hash (a reconcile side given as `hash:`): read, and apply exactly.

A change's `table` is the hash, its key `{"field": ...}` and its values
`{"value": ...}` as the exact strings Redis holds. Applying runs one Lua script, so
it is atomic: every field must still hold its planned before-value, or nothing is
written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.connectors import RedisConnector, SourceError
from agent.errors import RemediationFailed
from agent.probe_spec import RunContext
from remediations._base import ActionResult, Change

_CHECK_AND_SET = """
for i = 1, #ARGV, 3 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if current ~= ARGV[i + 1] then
    return redis.error_reply('changed since the plan: ' .. ARGV[i])
  end
end
for i = 1, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
end
return #ARGV / 3
"""


def as_text(value: Any) -> str:
    """A value as Redis stores it."""
    return value if isinstance(value, str) else "" if value is None else str(value)


async def read_field(
    connector: RedisConnector,
    hash_key: str,
    field: str,
    timeout: float,  # noqa: ASYNC109
) -> str | None:
    """One field's current value, or None."""
    value = await connector.execute("HGET", hash_key, field, timeout=timeout)
    return None if value is None else as_text(value)


async def apply_hash_changes(
    source: str,
    changes: Sequence[Change],
    ctx: RunContext,
    *,
    max_rows: int,
    timeout: float,  # noqa: ASYNC109
) -> ActionResult:
    """Apply `changes` (all on one hash per call group) atomically."""
    if len(changes) > max_rows:
        reason = f"would touch {len(changes)} rows, more than max_rows {max_rows}: nothing written"
        return ActionResult(False, reason, error=reason)
    connector = ctx.connector(source)
    assert connector.dialect == "redis"
    by_hash: dict[str, list[Change]] = {}
    for change in changes:
        by_hash.setdefault(change.table, []).append(change)
    try:
        for hash_key, group in by_hash.items():
            args: list[str] = []
            for change in group:
                args += [
                    as_text(change.key["field"]),
                    as_text(change.before["value"]),
                    as_text(change.after["value"]),
                ]
            await connector.execute("EVAL", _CHECK_AND_SET, 1, hash_key, *args, timeout=timeout)
    except (SourceError, RemediationFailed) as exc:
        return ActionResult(False, f"{exc}: nothing written", error=str(exc))
    return ActionResult(
        True, f"set {len(changes)} fields in {', '.join(sorted(by_hash))}", changes=list(changes)
    )
