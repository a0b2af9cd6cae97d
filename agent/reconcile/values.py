"""Column values across engines: their hash kind, a comparable form, and a JSON form.

Drivers hand back different Python types for the same number (psycopg and PyMySQL
give `Decimal` for NUMERIC/DECIMAL, SQLite gives `float`, Redis gives `str`), so
values are normalized before they are compared, and each column gets one hash kind
that both sides agree on before any checksum is computed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from agent.reconcile.hashing import HashKind

_INTEGER = re.compile(r"[+-]?\d+")


class IncompatibleKinds(Exception):
    """A column holds kinds of values on the two sides that cannot hash alike."""


def kind_of(value: Any) -> HashKind | str | None:
    """The hash kind of one value; None for NULL; the type name when it cannot be hashed."""
    if value is None:
        return None
    if isinstance(value, bool):  # before int: bool is an int subclass, but MariaDB has none
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, Decimal | float):
        return "decimal"
    if isinstance(value, str | UUID):
        return "text"
    if isinstance(value, date) and not isinstance(value, datetime):
        return "date"
    return type(value).__name__


def column_kind(rows: Sequence[Sequence[Any]], index: int) -> HashKind | str | None:
    """The kind of a column in sample rows: that of its first non-NULL value."""
    for row in rows:
        kind = kind_of(row[index])
        if kind is not None:
            return kind
    return None


def agree(left: HashKind | str | None, right: HashKind | str | None) -> HashKind:
    """The one kind both sides hash a column as; IncompatibleKinds if there is none."""
    supported = ("int", "decimal", "text", "date")
    for kind in (left, right):
        if kind is not None and kind not in supported:
            raise IncompatibleKinds(f"{kind} values cannot be checksummed")
    if left is None or right is None or left == right:
        found = left or right or "text"  # all NULL (or empty) on both sides: any kind agrees
        return found  # type: ignore[return-value]  # checked against `supported` above
    pair = {left, right}
    if pair == {"int", "decimal"}:
        return "decimal"
    if pair == {"text", "date"}:
        return "text"  # a date renders as ISO text in every engine
    raise IncompatibleKinds(f"{left} on the left but {right} on the right")


def comparable(value: Any) -> Any:
    """A value in the form used for equality: floats become their shortest Decimal."""
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def parse_number(text: Any) -> Any:
    """A Redis string as int or Decimal when it is a number, else unchanged."""
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    if _INTEGER.fullmatch(stripped):
        return int(stripped)
    try:
        number = Decimal(stripped)
    except InvalidOperation:
        return text
    return number if number.is_finite() else text


def parse_key(text: str) -> Any:
    """A Redis field as an int when it is one (to meet integer keys of a SQL side)."""
    return int(text) if _INTEGER.fullmatch(text) else text


def to_json(value: Any) -> Any:
    """A value for evidence: exact, and native JSON where that loses nothing."""
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        as_float = float(value)
        # 19.99 stays a JSON number; a decimal no float can hold exactly stays a string.
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, date | UUID):
        return str(value) if isinstance(value, UUID) else value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def sort_key(key: Sequence[Any]) -> tuple[tuple[int, Any], ...]:
    """An order for keys of mixed types: numbers, then text, then anything else by repr."""
    parts: list[tuple[int, Any]] = []
    for value in key:
        if isinstance(value, int | Decimal | float) and not isinstance(value, bool):
            parts.append((0, value))
        elif isinstance(value, str):
            parts.append((1, value))
        else:
            parts.append((2, repr(value)))
    return tuple(parts)
