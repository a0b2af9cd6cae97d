"""One duration type for the whole config: `500ms`, `15s`, `5m`, `1h`, `7d`, `1h30m`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")


def parse_duration(text: str) -> timedelta:
    """Parse `500ms`, `15s`, `5m`, `1h`, `7d`, `2w` or a sequence like `1h30m`.

    Raises ValueError with a message fit for a config error.
    """
    s = text.strip()
    if not _WHOLE.match(s):
        raise ValueError(
            f"invalid duration {text!r}: expected a number with a unit "
            "(ms, s, m, h, d, w), e.g. 500ms, 30s, 5m, 1h30m"
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(s))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a timedelta in the shortest config form (`90s` -> `1m30s`)."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        n, ms = divmod(ms, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


def _coerce(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"invalid duration {value!r}: expected a string such as 30s or 5m")
    raise ValueError(f"invalid duration {value!r}: a unit is required, e.g. {value}s or {value}ms")


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$"}),
]
"""A pydantic field type: accepts `30s`-style strings, holds a timedelta, dumps back to a string."""
