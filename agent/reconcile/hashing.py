"""A row hash that PostgreSQL, MariaDB/MySQL, DuckDB and Python compute identically.

The checksum path sums a per-row hash inside each database, so the hash must be
written in each SQL dialect and give the same integer everywhere. It is built from
plain 64-bit integer arithmetic, which every engine evaluates the same way, and md5
only where a column holds text (md5 is slow: ~1.2 µs a call in PostgreSQL 15, ~1.9 µs
in MariaDB, against ~0.1 µs for the arithmetic):

1. Each column value becomes an integer `r` in [0, Q), Q = P - 1, P = 2^31 - 1, by
   its kind:

   - `int`:     `v mod Q`
   - `decimal`: `round(v, 6) * 10^6 mod Q` (the value in millionths; floats go through
     the engine's own float-to-decimal cast first)
   - `text`:    the first 8 hex digits of `md5(utf8(v))` as an integer, `mod Q`
   - `date`:    as text, ISO `YYYY-MM-DD`
   - NULL:      Q itself, which no value reduces to. (The fold below works modulo P,
     so NULL must differ from every value modulo P too: with values in [0, Q) and
     NULL = Q it does; a NULL of P would have hashed like a 0.)

   `%` truncates toward zero in SQL, so a value is reduced as `((v % Q) + Q) % Q`
   to land in [0, Q) on every engine.
2. The row's values are folded in column order: `acc = (acc * M + r) % P`. Every
   intermediate is non-negative and below 2^63, so no engine overflows or switches to
   floats.
3. The result is multiplied by a factor of the row's key: `h = acc * B % P` with
   `B = K + r'`, where r' is the first key column reduced the same way but modulo
   R = 2^30 (NULL as R). B lies in [K, K + R] and is never 0 modulo P, so a change
   in any value changes h; and B differs between the keys of a range, so a transfer
   (+d on one row, -d on another), which a plain sum of linear hashes would miss,
   changes the sum by d * (B1 - B2). With integer keys h is quadratic in the key,
   so two keys missing and two others extra do not cancel either. A difference goes
   unnoticed only by a ~1/P coincidence.

   (An earlier form, `acc * (acc + K)`, cost a third more: SQL evaluates `acc` twice,
   and neither MariaDB nor PostgreSQL shares the work. The factor B re-reduces only
   the first key column.)

A range's checksum is `count(*)` and the exact `sum(h)` (PostgreSQL sums bigints as
numeric, MariaDB as DECIMAL, DuckDB as HUGEINT: no overflow).

Known limits, all on the side of safety except the last: a float that the engines
render differently (PostgreSQL 15 keeps 15 significant digits) makes a false
difference, which costs a pull of that range and is then compared exactly; values are
compared to 6 decimal places, so two decimals that differ only beyond the 6th place
hash the same and the checksum path cannot see that difference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

Dialect = Literal["postgres", "mysql", "duckdb"]
HashKind = Literal["int", "decimal", "text", "date"]

P = 2_147_483_647  # 2^31 - 1, a prime: products of two reduced values fit in a signed bigint
Q = P - 1  # values reduce into [0, Q) ...
NULL = Q  # ... so that NULL, as Q, is unlike every value, also modulo P
M = 1_588_635_695  # the fold multiplier, < P
R = 2**30  # the key factor's reduction ...
K = 1_000_000_007  # ... and offset: K + R < P, so the factor is never 0 modulo P
SCALE = 6  # decimals are compared in millionths
_MILLION = 10**SCALE
_QUANTUM = Decimal(1).scaleb(-SCALE)

# --- SQL, per dialect ---------------------------------------------------------------


def quote(dialect: Dialect, name: str) -> str:
    """A column name as a quoted identifier of the dialect."""
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def _reduce_sql(dialect: Dialect, column: str, kind: HashKind, modulus: int = Q) -> str:
    """The SQL for step 1: a column's value as an integer in [0, n), NULL as n (n = Q by default)."""
    c, n = column, modulus
    if dialect == "postgres":
        if kind == "int":
            value = f"((CAST({c} AS BIGINT) % {n} + {n}) % {n})"
        elif kind == "decimal":
            value = f"CAST((round(CAST({c} AS NUMERIC), {SCALE}) * {_MILLION} % {n} + {n}) % {n} AS BIGINT)"
        else:
            value = f"(CAST(CAST(('x' || substr(md5(CAST({c} AS TEXT)), 1, 8)) AS BIT(32)) AS BIGINT) % {n})"
    elif dialect == "mysql":
        # No CAST for integers: an UNSIGNED column makes the arithmetic unsigned, which
        # is harmless because every step is non-negative (a cast costs ~20 % of a scan).
        # Decimals are cast back to integers so the fold is not DECIMAL arithmetic.
        if kind == "int":
            value = f"(({c} % {n} + {n}) % {n})"
        elif kind == "decimal":
            value = f"((CAST(CAST({c} AS DECIMAL(65,{SCALE})) * {_MILLION} % {n} AS SIGNED) + {n}) % {n})"
        else:
            value = (
                f"CAST(CAST(CONV(SUBSTR(MD5(CONVERT({c} USING utf8mb4)), 1, 8), 16, 10)"
                f" AS UNSIGNED) % {n} AS SIGNED)"
            )
    elif kind == "int":
        value = f"((CAST(CAST({c} AS HUGEINT) % {n} AS BIGINT) + {n}) % {n})"
    elif kind == "decimal":
        value = (
            f"((CAST(CAST(CAST({c} AS DECIMAL(38,{SCALE})) * {_MILLION} AS HUGEINT) % {n} AS BIGINT)"
            f" + {n}) % {n})"
        )
    else:
        value = f"(CAST(('0x' || substr(md5(CAST({c} AS VARCHAR)), 1, 8)) AS BIGINT) % {n})"
    return f"COALESCE({value}, {n})"


def fold_sql(dialect: Dialect, columns: Sequence[tuple[str, HashKind]]) -> str:
    """The SQL for steps 1-3 over already quoted column expressions and their kinds."""
    if not columns:
        raise ValueError("a hash needs at least one column")
    acc = ""
    for column, kind in columns:
        reduced = _reduce_sql(dialect, column, kind)
        acc = reduced if not acc else f"(({acc}) * {M} + {reduced}) % {P}"
    first, kind = columns[0]
    return f"(({acc}) * ({_reduce_sql(dialect, first, kind, R)} + {K}) % {P})"


# --- the same in Python (local sides: SQLite files, Redis hashes; and the tests' oracle) ---


def reduce_value(value: Any, kind: HashKind, modulus: int = Q) -> int:
    """Step 1 for one Python value (Python's `%` already lands in [0, modulus))."""
    if value is None:
        return modulus
    number = isinstance(value, int | Decimal | float) and not isinstance(value, bool)
    if kind == "int" and isinstance(value, int) and number:
        return value % modulus
    if kind == "decimal" and number:
        exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if exact.is_finite():
            millionths = exact.quantize(_QUANTUM, rounding=ROUND_HALF_UP).scaleb(SCALE)
            return int(millionths) % modulus
    # Anything else (a Redis value that is not a number) hashes as its text: it then
    # differs from the other side's number, and the row comparison says how.
    text = value.isoformat() if isinstance(value, date) else str(value)
    return int(hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:8], 16) % modulus


def fold(values: Sequence[Any], kinds: Sequence[HashKind]) -> int:
    """Steps 1-3 for one row's values."""
    if not values:
        raise ValueError("a hash needs at least one column")
    acc = 0
    for index, (value, kind) in enumerate(zip(values, kinds, strict=True)):
        reduced = reduce_value(value, kind)
        acc = reduced if index == 0 else (acc * M + reduced) % P
    return acc * (reduce_value(values[0], kinds[0], R) + K) % P
