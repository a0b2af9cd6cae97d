"""Row-by-row comparison of two keyed sets, with tolerance for numbers.

Both paths end here: the full path with every row, the checksum path with the rows of
the ranges whose checksums differed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from agent.reconcile.values import comparable

DiffKind = Literal["mismatch", "missing_left", "missing_right"]
Key = tuple[Any, ...]
Values = tuple[Any, ...]


class ReconcileError(Exception):
    """The comparison cannot be made as configured; the message says what to change."""


@dataclass(frozen=True)
class Tolerance:
    """How far two numbers may differ and still count as equal.

    Equal when `|l - r| <= absolute` or `|l - r| <= relative * max(|l|, |r|)`;
    with neither set, numbers must be equal exactly.
    """

    absolute: Decimal | None = None
    relative: Decimal | None = None

    def accepts(self, left: Decimal | int, right: Decimal | int) -> bool:
        """True when the two numbers are equal within this tolerance."""
        gap = abs(Decimal(left) - Decimal(right))
        if gap == 0:
            return True
        if self.absolute is not None and gap <= self.absolute:
            return True
        return self.relative is not None and gap <= self.relative * max(
            abs(Decimal(left)), abs(Decimal(right))
        )


EXACT = Tolerance()


@dataclass(frozen=True)
class Difference:
    """One key whose rows disagree; `left`/`right` are the compared values, None when absent."""

    key: Key
    kind: DiffKind
    left: Values | None
    right: Values | None


def keyed(rows: Iterable[Sequence[Any]], key_width: int, side: str) -> dict[Key, Values]:
    """Rows `(key..., values...)` as `{key: values}`; ReconcileError on a NULL or repeated key."""
    out: dict[Key, Values] = {}
    for row in rows:
        key = tuple(row[:key_width])
        if any(part is None for part in key):
            raise ReconcileError(f"the {side} side has a row with a NULL key: {_show(key)}")
        if key in out:
            raise ReconcileError(
                f"the {side} side has the key {_show(key)} more than once: "
                "the key columns must identify one row"
            )
        out[key] = tuple(comparable(value) for value in row[key_width:])
    return out


def differences(
    left: Mapping[Key, Values], right: Mapping[Key, Values], tolerances: Sequence[Tolerance]
) -> list[Difference]:
    """Every key that is missing on one side or whose values differ beyond tolerance."""
    found: list[Difference] = []
    for key, values in left.items():
        other = right.get(key)
        if other is None:
            found.append(Difference(key, "missing_right", values, None))
        elif not _same(values, other, tolerances):
            found.append(Difference(key, "mismatch", values, other))
    found.extend(
        Difference(key, "missing_left", None, values)
        for key, values in right.items()
        if key not in left
    )
    return found


def _same(left: Values, right: Values, tolerances: Sequence[Tolerance]) -> bool:
    for a, b, tolerance in zip(left, right, tolerances, strict=True):
        if a is None or b is None:
            if a is not b:
                return False
        elif _number(a) and _number(b):
            if not tolerance.accepts(a, b):
                return False
        elif a != b and not (_nan(a) and _nan(b)):
            return False
    return True


def _nan(value: Any) -> bool:
    return isinstance(value, Decimal) and value.is_nan()


def _number(value: Any) -> bool:
    # NaN (PostgreSQL numeric has it) cannot be subtracted: it is compared with `==`.
    if isinstance(value, Decimal):
        return value.is_finite()
    return isinstance(value, int) and not isinstance(value, bool)


def _show(key: Key) -> str:
    return repr(key[0]) if len(key) == 1 else repr(key)
