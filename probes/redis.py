"""Measure a Redis source: PING latency, INFO fields, numbers in keys, queue lengths, key counts.

Values: `latency_ms` and `ping_ms` (the PING round trip) always; then, each under the
name you give it: `info.<field>` for INFO fields (`info.connected_clients`,
`info.role`); numbers read from string keys (GET) and hash fields (HGET); the length
of a key whatever its type (LLEN, XLEN, ZCARD, SCARD or HLEN; a missing key is 0, as
Redis deletes an empty queue); and key counts for a glob pattern by a bounded SCAN
that stops after about `max_scan` keys examined, with `<name>_truncated` = 1 when it
stopped early (the count is then a lower bound). A missing INFO field, a missing key
or a value that is not a number leaves its value out and says so in the detail, so an
expectation on it fails naming it. Only reading commands are sent.

```yaml
probes:
  - name: cache
    kind: redis
    # A source from `sources:` of kind redis.
    source: cache
    # INFO fields, as values info.<field>.
    info: [connected_clients, used_memory, role]
    # Numbers read from string keys: value name -> key.
    keys: {orders_today: "stats:orders:today"}
    # Numbers read from hash fields: value name -> {key, field}.
    hashes:
      sku_1_available: {key: "stock", field: "sku-1"}
    # Lengths of lists, streams, sorted sets, sets or hashes: value name -> key.
    lengths: {email_queue: "queue:email", payment_events: "stream:payments"}
    # Keys matching a glob pattern, counted by SCAN; stops after about max_scan keys.
    counts:
      sessions: {pattern: "session:*", max_scan: 10000}
    every: 30s
    timeout: 5s
    expect: [ping_ms < 50, email_queue < 1000, info.role == "master"]
```
"""

from __future__ import annotations

import re
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import Field, model_validator

from agent.connectors import SourceError
from agent.errors import ProbeError
from agent.probe_spec import ProbeSpec, RunContext, StrictModel
from agent.results import Observation

if TYPE_CHECKING:
    from redis.asyncio import Redis

SERVER_SHARE = 0.8  # of `timeout`, for each command; see probes/sql.py
SCAN_BATCH = 1000
_VALUE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = {"latency_ms", "ping_ms", "info"}
# The command that measures each type's length; other types have none.
_LENGTH_OF = {"list": "LLEN", "stream": "XLEN", "zset": "ZCARD", "set": "SCARD", "hash": "HLEN"}


class HashField(StrictModel):
    """One field of one hash."""

    key: str = Field(description="The hash key.")
    field: str = Field(description="The field within the hash.")


class KeyCount(StrictModel):
    """Keys matching a pattern, counted by SCAN."""

    pattern: str = Field(description="A glob pattern, e.g. `session:*`.")
    max_scan: int = Field(
        default=10_000, ge=1, description="Stop after about this many keys examined."
    )


class RedisSpec(ProbeSpec):
    """What to read from one Redis source."""

    kind: Literal["redis"]
    source: str = Field(description="The redis source to measure.")
    info: list[str] = Field(default_factory=list, description="INFO fields, as info.<field>.")
    keys: dict[str, str] = Field(
        default_factory=dict, description="Value name -> string key holding a number (GET)."
    )
    hashes: dict[str, HashField] = Field(
        default_factory=dict, description="Value name -> hash key and field holding a number."
    )
    lengths: dict[str, str] = Field(
        default_factory=dict, description="Value name -> key whose length is read (type-aware)."
    )
    counts: dict[str, KeyCount] = Field(
        default_factory=dict, description="Value name -> pattern counted by a bounded SCAN."
    )

    @model_validator(mode="after")
    def _check_value_names(self) -> RedisSpec:
        names = [*self.keys, *self.hashes, *self.lengths, *self.counts]
        names += [f"{name}_truncated" for name in self.counts]
        seen: set[str] = set()
        for name in names:
            if not _VALUE_NAME.match(name):
                raise ValueError(
                    f"value name {name!r}: use letters, digits and '_' (it is used in expect:)"
                )
            if name in _RESERVED or name in seen:
                raise ValueError(f"value name {name!r} is used twice (or is a built-in value)")
            seen.add(name)
        return self


async def run(spec: RedisSpec, ctx: RunContext) -> Observation:
    """PING, then every requested read; a source failure is a failed result."""
    connector = ctx.connector(spec.source)
    if connector.dialect != "redis":
        raise ProbeError(f"source {spec.source!r} is {connector.dialect}, not redis")
    redis = connector
    budget = spec.timeout.total_seconds() * SERVER_SHARE
    notes: list[str] = []
    try:
        started = time.perf_counter()
        await redis.execute("PING", timeout=budget)
        ping_ms = round((time.perf_counter() - started) * 1000, 3)
        values: dict[str, Any] = {"latency_ms": ping_ms, "ping_ms": ping_ms}
        if spec.info:
            info = await redis.call(lambda r: r.info("all"), timeout=budget)
            values["info"] = {f: info[f] for f in spec.info if f in info}
            notes += [f"INFO has no field {f!r}" for f in spec.info if f not in info]
        if spec.keys:
            raw = await redis.call(lambda r: r.mget(list(spec.keys.values())), timeout=budget)
            _numbers(values, notes, dict(zip(spec.keys, raw, strict=True)), spec.keys)
        if spec.hashes:
            raw = await redis.call(lambda r: _hget_all(r, spec.hashes), timeout=budget)
            where = {name: f"{h.key}[{h.field}]" for name, h in spec.hashes.items()}
            _numbers(values, notes, dict(zip(spec.hashes, raw, strict=True)), where)
        if spec.lengths:
            lengths = await redis.call(lambda r: _lengths(r, spec.lengths), timeout=budget)
            for name, length in lengths.items():
                if isinstance(length, int):
                    values[name] = length
                else:
                    notes.append(length)
        for name, count in spec.counts.items():
            found, truncated = await redis.call(partial(_count, count=count), timeout=budget)
            values[name] = found
            values[f"{name}_truncated"] = int(truncated)
    except SourceError as exc:
        return Observation(error=str(exc))
    detail = f"PONG in {ping_ms:.1f} ms"
    if notes:
        detail += "; " + "; ".join(notes)
    return Observation(values=values, detail=detail, latency_ms=ping_ms)


def _numbers(
    values: dict[str, Any], notes: list[str], raw: dict[str, Any], where: dict[str, str]
) -> None:
    """Store each raw reply that is a number under its name; note the others."""
    for name, text in raw.items():
        if text is None:
            notes.append(f"{name}: {where[name]} does not exist")
            continue
        number = _number(text)
        if number is None:
            notes.append(f"{name}: {where[name]} holds {str(text)[:40]!r}, not a number")
        else:
            values[name] = number


def _number(text: Any) -> int | float | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        pass
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


async def _hget_all(client: Redis, hashes: dict[str, HashField]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for h in hashes.values():
            pipe.hget(h.key, h.field)
        replies: list[Any] = await pipe.execute()
        return replies


async def _lengths(client: Redis, keys: dict[str, str]) -> dict[str, int | str]:
    """Each key's length by its type, or a note why it has none."""
    async with client.pipeline(transaction=False) as pipe:
        for key in keys.values():
            pipe.type(key)
        types = await pipe.execute()
    out: dict[str, int | str] = {}
    async with client.pipeline(transaction=False) as pipe:
        measured = []
        for (name, key), kind in zip(keys.items(), types, strict=True):
            if kind == "none":
                out[name] = 0  # Redis deletes a list, set or stream when it empties
            elif kind in _LENGTH_OF:
                pipe.execute_command(_LENGTH_OF[kind], key)
                measured.append(name)
            else:
                out[name] = f"{name}: {key} is a {kind}, which has no length"
        for name, length in zip(measured, await pipe.execute(), strict=True):
            out[name] = int(length)
    return out


async def _count(client: Redis, count: KeyCount) -> tuple[int, bool]:
    """Keys matching the pattern and whether SCAN stopped before the end."""
    batch = min(SCAN_BATCH, count.max_scan)
    seen: set[str] = set()  # SCAN may return a key twice while the keyspace is rehashed
    cursor, examined = 0, 0
    while True:
        cursor, keys = await client.scan(cursor=cursor, match=count.pattern, count=batch)
        seen.update(cast(list[str], keys))  # decode_responses: keys are str
        examined += batch  # COUNT is the number of keys SCAN looks at per call (roughly)
        if cursor == 0:
            return len(seen), False
        if examined >= count.max_scan:
            return len(seen), True


SPEC = RedisSpec
