"""The row hash gives the same number in PostgreSQL, MariaDB, DuckDB and Python.

Every tricky value is stored in a real table of each engine, hashed there by the SQL
the checksum path uses, and compared with the Python implementation (which local
sides use and which is the reference here).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import duckdb
import pytest

from agent.reconcile.hashing import (
    NULL,
    Dialect,
    HashKind,
    P,
    Q,
    fold,
    fold_sql,
    quote,
    reduce_value,
)
from tests.reconcile.conftest import Data

# (id, integer, decimal, text, day) -- id only orders the rows.
TRICKY: list[tuple[Any, ...]] = [
    (1, 0, Decimal("0"), "", date(2024, 1, 2)),
    (2, -1, Decimal("-0.000001"), "é", date(1970, 1, 1)),
    (3, 9_223_372_036_854_775_807, Decimal("123456789012.123456"), "日本語 😀", date(9999, 12, 31)),
    (4, -9_223_372_036_854_775_808, Decimal("-123456789012.123456"), "NULL", date(2000, 2, 29)),
    (5, P, Decimal("0.0000005"), "a|b", None),  # rounds half away from zero to 0.000001
    (6, -P, Decimal("-0.0000005"), "'quote\"", date(2024, 6, 30)),
    (7, P + 1, Decimal("12.50"), " padded ", date(2024, 12, 1)),
    (8, None, None, None, None),
    (9, 42, Decimal("-7"), "tab\there", date(2024, 1, 1)),
    (10, 2_147_483_646, Decimal("99999999999999.999999"), "ß" * 300, date(1, 1, 1)),
]
COLUMNS: list[tuple[str, HashKind]] = [
    ("i", "int"),
    ("d", "decimal"),
    ("t", "text"),
    ("day", "date"),
]
PG_COLUMNS = "id INT PRIMARY KEY, i BIGINT, d NUMERIC(30,7), t TEXT, day DATE"
MARIA_COLUMNS = "id INT PRIMARY KEY, i BIGINT, d DECIMAL(30,7), t TEXT, day DATE"
DUCK_COLUMNS = "id INTEGER PRIMARY KEY, i BIGINT, d DECIMAL(30,7), t VARCHAR, day DATE"


TABLE_COLUMNS: dict[Dialect, str] = {
    "postgres": "id INT PRIMARY KEY, i BIGINT, d NUMERIC(30,7), t TEXT, day DATE",
    "mysql": "id INT PRIMARY KEY, i BIGINT, d DECIMAL(30,7), t TEXT, day DATE",
    "duckdb": "id INTEGER PRIMARY KEY, i BIGINT, d DECIMAL(30,7), t VARCHAR, day DATE",
}
FLOAT_COLUMNS: dict[Dialect, str] = {
    "postgres": "id INT, f DOUBLE PRECISION",
    "mysql": "id INT, f DOUBLE",
    "duckdb": "id INT, f DOUBLE",
}
DIALECTS: list[Dialect] = ["postgres", "mysql", "duckdb"]


def engine_hashes(
    data: Data,
    dialect: Dialect,
    columns_sql: str,
    rows: Sequence[Sequence[Any]],
    hashed: list[tuple[str, HashKind]],
) -> list[int]:
    """Store `rows` in a real table of `dialect` and hash them there, ordered by id."""
    expression = fold_sql(dialect, [(quote(dialect, name), kind) for name, kind in hashed])
    if dialect == "postgres":
        table = data.pg("hashed", columns_sql, rows)
        assert data._pg is not None
        query = data._pg.execute(f"SELECT {expression} FROM {table} ORDER BY id")
        return [int(row[0]) for row in query.fetchall()]
    if dialect == "mysql":
        table = data.maria("hashed", columns_sql, rows)
        assert data._maria is not None
        with data._maria.cursor() as cur:
            cur.execute(f"SELECT {expression} FROM {table} ORDER BY id")
            return [int(row[0]) for row in cur.fetchall()]
    table = data.duck("hashed", columns_sql, rows)
    with duckdb.connect(str(data.duck_path), read_only=True) as conn:
        found = conn.execute(f"SELECT {expression} FROM {table} ORDER BY id").fetchall()
        return [int(row[0]) for row in found]


def python_hashes(hashed: list[tuple[str, HashKind]]) -> list[int]:
    positions = {"i": 1, "d": 2, "t": 3, "day": 4}
    kinds = [kind for _, kind in hashed]
    return [fold([row[positions[name]] for name, _ in hashed], kinds) for row in TRICKY]


# Each column alone (its reduction and the mix) and all of them folded together.
CASES = [pytest.param([column], id=column[0]) for column in COLUMNS] + [
    pytest.param(COLUMNS, id="all-columns")
]


@pytest.mark.parametrize("hashed", CASES)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_engine_matches_python(
    data: Data, dialect: Dialect, hashed: list[tuple[str, HashKind]]
) -> None:
    got = engine_hashes(data, dialect, TABLE_COLUMNS[dialect], TRICKY, hashed)
    assert got == python_hashes(hashed)


FLOATS = [0.1, 2.5, -1e6, 1 / 3, 0.0, -0.000001, 12345.678901]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_floats_hash_as_their_decimal_value(data: Data, dialect: Dialect) -> None:
    # Floats with up to 15 significant digits render alike everywhere; beyond that
    # the engines may differ, which costs a pull of the range, never a wrong answer.
    rows = list(enumerate(FLOATS))
    got = engine_hashes(data, dialect, FLOAT_COLUMNS[dialect], rows, [("f", "decimal")])
    assert got == [fold([value], ["decimal"]) for value in FLOATS]


def test_mariadb_unsigned_integers(data: Data) -> None:
    # An UNSIGNED column makes MariaDB's arithmetic unsigned; mixed with a negative
    # signed value it must still hash like everywhere else.
    rows = [(1, 2**64 - 1, -5), (2, 2**63, None), (3, 0, -(2**63)), (4, None, 7)]
    hashed: list[tuple[str, HashKind]] = [("u", "int"), ("i", "int")]
    got = engine_hashes(data, "mysql", "id INT, u BIGINT UNSIGNED, i BIGINT", rows, hashed)
    assert got == [fold(row[1:], ["int", "int"]) for row in rows]


def test_null_is_unlike_every_value() -> None:
    assert reduce_value(None, "int") == NULL
    assert all(0 <= reduce_value(v, "int") < Q for v in (0, P, -P, Q, -Q, 2**63 - 1, -(2**63)))
    assert fold([None], ["text"]) != fold([""], ["text"])
    for value in (0, P, Q, -P, -Q):  # NULL must differ from these modulo P, too
        assert fold([None], ["int"]) != fold([value], ["int"])
        assert fold([1, None], ["int", "int"]) != fold([1, value], ["int", "int"])


def test_a_transfer_between_two_rows_changes_the_sum() -> None:
    # +5 on one key and -5 on another: a linear hash would not notice.
    before = fold([1, 10], ["int", "int"]) + fold([2, 20], ["int", "int"])
    after = fold([1, 15], ["int", "int"]) + fold([2, 15], ["int", "int"])
    assert before != after


def test_keys_with_equal_sums_do_not_cancel() -> None:
    # Keys 10 and 20 missing, 12 and 18 extra, all with the same value.
    kinds: list[HashKind] = ["int", "int"]
    assert fold([10, 5], kinds) + fold([20, 5], kinds) != fold([12, 5], kinds) + fold(
        [18, 5], kinds
    )
    assert fold([10], ["int"]) + fold([20], ["int"]) != fold([12], ["int"]) + fold([18], ["int"])


def test_decimals_and_integers_agree_when_equal() -> None:
    assert reduce_value(5, "decimal") == reduce_value(Decimal("5.00"), "decimal")
    assert reduce_value(0.1, "decimal") == reduce_value(Decimal("0.1"), "decimal")


def test_a_non_number_in_a_number_column_hashes_as_text() -> None:
    assert reduce_value("n/a", "decimal") == reduce_value("n/a", "text")
