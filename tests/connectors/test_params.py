"""One placeholder style for users, rewritten per driver, literals and comments untouched."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.connectors import SourceError
from agent.connectors._sql import prepare

CASES: list[tuple[str, str, Any, str, Any]] = [
    # (id, dialect, params, expected sql, expected params) for the query in SQL below
    ("pg-named", "postgres", {"s": "x"}, "SELECT %(s)s, 'a:b ?', '%%' -- :c ?", {"s": "x"}),
    ("mysql-named", "mysql", {"s": "x"}, "SELECT %(s)s, 'a:b ?', '%%' -- :c ?", {"s": "x"}),
    ("duckdb-named", "duckdb", {"s": "x"}, "SELECT $s, 'a:b ?', '%' -- :c ?", {"s": "x"}),
    ("sqlite-named", "sqlite", {"s": "x"}, "SELECT :s, 'a:b ?', '%' -- :c ?", {"s": "x"}),
    ("no-params", "postgres", None, "SELECT :s, 'a:b ?', '%' -- :c ?", None),
]
SQL = "SELECT :s, 'a:b ?', '%' -- :c ?"


@pytest.mark.parametrize(
    ("dialect", "params", "sql", "bound"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_named_placeholders_are_rewritten_outside_literals(
    dialect: Any, params: Any, sql: str, bound: Any
) -> None:
    assert prepare(SQL, params, dialect) == (sql, bound)


@pytest.mark.parametrize(
    ("dialect", "sql", "expected"),
    [
        (
            "postgres",
            "SELECT x::text, $$ :a ? $$, E'\\' :b', \"c:d\" FROM t WHERE y = ?",
            "SELECT x::text, $$ :a ? $$, E'\\' :b', \"c:d\" FROM t WHERE y = %s",
        ),
        ("postgres", "SELECT $tag$ ; ? $tag$ WHERE a = ?", "SELECT $tag$ ; ? $tag$ WHERE a = %s"),
        (
            "mysql",
            "SELECT 'it\\'s ?', `a?b`, \"q?\" # ?\nFROM t WHERE y = ?",
            "SELECT 'it\\'s ?', `a?b`, \"q?\" # ?\nFROM t WHERE y = %s",
        ),
        (
            "duckdb",
            "SELECT x::INT, arr[1:2] FROM t /* ? */ WHERE y = ?",
            "SELECT x::INT, arr[1:2] FROM t /* ? */ WHERE y = ?",
        ),
        ("sqlite", "SELECT [a?] FROM t WHERE y = ?", "SELECT [a?] FROM t WHERE y = ?"),
    ],
    ids=["pg-quotes", "pg-dollar-tag", "mysql-quotes", "duckdb-casts", "sqlite-brackets"],
)
def test_only_real_placeholders_count(dialect: Any, sql: str, expected: str) -> None:
    assert prepare(sql, [1], dialect) == (expected, [1] if dialect == "duckdb" else (1,))


@pytest.mark.parametrize(
    ("sql", "params", "message"),
    [
        ("SELECT 1; SELECT 2", None, "only one SQL statement"),
        ("SELECT :a", {"b": 1}, "no value for parameter :a"),
        ("SELECT :a, ?", {"a": 1}, "either :name placeholders with a mapping or ?"),
        ("SELECT :a", [1], "params must be a mapping"),
        ("SELECT ?, ?", [1], "has 2 ? placeholders but 1 params"),
        ("SELECT ?", "x", "params must be a list or a mapping"),
    ],
    ids=["two-statements", "missing-name", "mixed", "named-with-list", "count", "string"],
)
def test_misuse_is_a_source_error(sql: str, params: Any, message: str) -> None:
    with pytest.raises(SourceError, match=message.replace("?", r"\?")):
        prepare(sql, params, "postgres")


def test_trailing_semicolon_and_comment_are_allowed() -> None:
    assert prepare("SELECT 1; -- done\n", None, "mysql") == ("SELECT 1", None)


def test_duckdb_gets_only_the_values_it_uses() -> None:
    assert prepare("SELECT $x, :a", {"a": 1, "b": 2}, "duckdb") == ("SELECT $x, $a", {"a": 1})


@given(st.text(alphabet=st.characters(blacklist_characters="'\\", blacklist_categories=("Cs",))))
def test_anything_inside_a_string_literal_is_left_alone(inner: str) -> None:
    sql = f"SELECT '{inner}' AS v WHERE a = ?"
    out, _ = prepare(sql, [1], "sqlite")
    assert out == sql.rstrip()
    pg, _ = prepare(sql, [1], "postgres")
    assert pg == f"SELECT '{inner.replace('%', '%%')}' AS v WHERE a = %s".rstrip()
