"""The config as `GET /v1/config` shows it: everything, except secrets.

Three layers, because secrets hide in more than `SecretStr` fields: every `SecretStr`
becomes `***`; values under secret-looking keys (an `Authorization` header, a `token`
label) become `***`; and every other string goes through the agent's `Redactor`, which
masks known secret values, URL passwords and `password=...` pairs (a DSN in a string).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import to_jsonable_python

from agent.redaction import MASK, Redactor

_SECRET_KEY = re.compile(
    r"(?i)(authorization|cookie|passw(or)?d|secret|token|api[-_]?key|private[-_]?key|credential)"
)


def redacted(config: BaseModel, redactor: Redactor) -> dict[str, Any]:
    """`config` as JSON-ready data with every secret masked."""
    data = _mask(config.model_dump(mode="python"), redactor)
    out: dict[str, Any] = to_jsonable_python(data)
    return out


def _mask(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, dict):
        return {
            key: MASK
            if isinstance(key, str) and _SECRET_KEY.search(key) and isinstance(item, str)
            else _mask(item, redactor)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_mask(item, redactor) for item in value]
    if isinstance(value, str):
        return redactor.redact(value)
    return value
