"""The `expect:` language: results, reasons, syntax errors and the pydantic field type."""

from __future__ import annotations

import operator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from agent.errors import ExpectationSyntaxError
from agent.expectations import Expect, Expectation, parse_expectation

NAMESPACE: dict[str, Any] = {
    "status": 503,
    "latency_ms": 412.5,
    "errors": 3,
    "zero": 0,
    "mode": "degraded",
    "healthy": True,
    "ready": False,
    "age_s": 120.0,
    "message": "connection refused",
    "region": "eu",
    "price": Decimal("9.99"),
    "nothing": None,
    "tags": ["a", "b"],
    "json": {
        "status": "ok",
        "count": 3,
        "items": [{"id": 7}, {"id": 8}],
        "weird key": 1,
        "in": "keyword as key",
    },
    "disk": {"percent": {"/": 41.2, "/var": 95}},
}


def check(text: str, namespace: dict[str, Any] = NAMESPACE) -> str | None:
    return parse_expectation(text).check(namespace)


HOLDS = [
    ("status == 503", "int-equal"),
    ("status != 200", "not-equal"),
    ("latency_ms > 400", "float-greater"),
    ("latency_ms <= 412.5", "float-less-equal"),
    ("errors >= 3", "greater-equal"),
    ("errors == 3.0", "int-equals-float"),
    ("price < 10", "decimal-is-a-number"),
    ("price > 9.5", "decimal-against-float"),
    ('json.status == "ok"', "member-double-quotes"),
    ("json.status == 'ok'", "member-single-quotes"),
    ('json["status"] == "ok"', "index-string-key"),
    ("json.items[1].id == 8", "index-integer-then-member"),
    ('json["weird key"] == 1', "key-with-space"),
    ('json.in == "keyword as key"', "keyword-as-member"),
    ('disk.percent["/"] < 90', "index-slash-key"),
    ("disk.percent['/var'] >= 95", "index-single-quoted-key"),
    ("healthy", "bare-true"),
    ("errors", "bare-non-zero-number"),
    ("not ready", "not-false"),
    ("not zero", "not-zero"),
    ("healthy == true", "bool-equals-true"),
    ("ready == false", "bool-equals-false"),
    ("healthy != 1", "true-is-not-1"),
    ("nothing == null", "null-equals-null"),
    ("zero != null", "zero-is-not-null"),
    ("mode != 0", "string-is-not-a-number"),
    ("status == 503 and mode == 'degraded'", "and"),
    ("status == 200 or errors > 0", "or"),
    ("not (errors > 0 and mode != 'degraded')", "not-parenthesised"),
    ("not status == 200", "not-binds-looser-than-comparison"),
    ("not not healthy", "double-not"),
    ("true or true and false", "and-binds-tighter-than-or"),
    ("not false and false or true", "not-and-or"),
    ("(true or true) and true", "parentheses"),
    ("ready or healthy and not ready", "mixed-precedence"),
    ("status == 503 or missing_name == 1", "or-short-circuits-missing"),
    ("not (ready and missing_name == 1)", "and-short-circuits-missing"),
    ("1 + 2 * 3 == 7", "multiplication-first"),
    ("(1 + 2) * 3 == 9", "parentheses-arithmetic"),
    ("10 - 4 - 3 == 3", "subtraction-left-associative"),
    ("12 / 3 / 2 == 2", "division-left-associative"),
    ("7 / 2 == 3.5", "true-division"),
    ("-3 < -2", "negative-literals"),
    ("-errors == -3", "negated-name"),
    ("- -3 == 3", "double-negation"),
    ("-2 * 3 == -6", "negation-binds-tightest"),
    ("errors * 100 / 4 == 75", "arithmetic-on-names"),
    ("latency_ms / 1000 < 1s", "milliseconds-to-seconds"),
    ("age_s < 5m", "duration-minutes"),
    ("age_s == 2m", "duration-equals-seconds"),
    ("500ms == 0.5", "duration-milliseconds"),
    ("15s == 15", "duration-seconds"),
    ("1h == 3600", "duration-hour"),
    ("7d == 604800", "duration-days"),
    ("1h30m == 5400", "duration-compound"),
    ("1.5h == 90m", "duration-fractional"),
    ("region in ['eu', 'us']", "in-list"),
    ("status not in [200, 204]", "not-in-list"),
    ("errors in [1.0, 3.0]", "in-list-numeric"),
    ("errors in [3,]", "list-trailing-comma"),
    ("healthy not in [1]", "in-list-bool-is-not-1"),
    ("'refused' in message", "substring"),
    ("'timeout' not in message", "not-substring"),
    ("'a' in tags", "in-list-value"),
    ("'status' in json", "key-in-mapping"),
    ("[1, 2] == [1, 2.0]", "list-equality"),
    ("[] == []", "empty-list"),
    ("tags == ['a', 'b']", "list-value-equality"),
    ("'abc' < 'abd'", "string-order"),
    ("\"it's\" == 'it\\'s'", "escaped-quote"),
    ('"a\\nb" != "a\\\\nb"', "newline-escape-vs-backslash"),
    ('"tab\\there" == "tab\there"', "tab-escape"),
    ("status==503 and\terrors>2", "no-spaces-around-operators"),
    ("status ==\n503", "newline-is-whitespace"),
]


@pytest.mark.parametrize("text", [t for t, _ in HOLDS], ids=[i for _, i in HOLDS])
def test_holds(text: str) -> None:
    assert check(text) is None


FAILS = [
    ("status == 200", "status == 200 failed: status is 503", "int"),
    ("latency_ms < 300", "latency_ms < 300 failed: latency_ms is 412.5", "float"),
    ('mode == "ok"', "mode == \"ok\" failed: mode is 'degraded'", "string-quoted-in-reason"),
    ("healthy == false", "healthy == false failed: healthy is true", "bool"),
    ("nothing != null", "nothing != null failed: nothing is null", "null"),
    ("healthy == 1", "healthy == 1 failed: healthy is true", "true-is-not-1"),
    ("status == '503'", "status == '503' failed: status is 503", "number-is-not-string"),
    (
        "status < 500 and errors == 0",
        "status < 500 and errors == 0 failed: status is 503",
        "and-reports-only-what-was-evaluated",
    ),
    (
        "status == 200 or errors == 0",
        "status == 200 or errors == 0 failed: status is 503, errors is 3",
        "or-reports-every-name",
    ),
    (
        "not (errors > 0 and mode == 'degraded')",
        "not (errors > 0 and mode == 'degraded') failed: errors is 3, mode is 'degraded'",
        "not-parenthesised",
    ),
    ("errors + errors > 6", "errors + errors > 6 failed: errors is 3", "name-listed-once"),
    ("ready", "ready failed: ready is false", "bare-false"),
    ("zero", "zero failed: zero is 0", "bare-zero"),
    ("1 > 2", "1 > 2 failed: it is false", "no-names"),
    ("age_s < 1m", "age_s < 1m failed: age_s is 120.0", "duration"),
    ("price > 10", "price > 10 failed: price is 9.99", "decimal-shown-as-number"),
    (
        'disk.percent["/var"] < 90',
        'disk.percent["/var"] < 90 failed: disk.percent["/var"] is 95',
        "index",
    ),
    ("json.items[0].id == 8", "json.items[0].id == 8 failed: json.items[0].id is 7", "list-index"),
    ("region in ['us']", "region in ['us'] failed: region is 'eu'", "in"),
    ("tags == ['a']", "tags == ['a'] failed: tags is ['a', 'b']", "list-shown"),
    (
        "json == null",
        "json == null failed: json is {'status': 'ok', 'count': 3, 'items': [{'id': 7}, {'id': ...",
        "long-value-shortened",
    ),
    # missing names
    (
        'json.status2 == "ok"',
        'json.status2 == "ok" failed: json.status2 is missing',
        "missing-member",
    ),
    ("nope == 1", "nope == 1 failed: nope is missing", "missing-top-level"),
    ("nope != 1", "nope != 1 failed: nope is missing", "missing-fails-even-for-not-equal"),
    ("not nope", "not nope failed: nope is missing", "missing-fails-under-not"),
    (
        "json.items[2].id == 1",
        "json.items[2].id == 1 failed: json.items[2].id is missing",
        "index-past-end",
    ),
    ("json.items.id == 1", "json.items.id == 1 failed: json.items.id is missing", "member-of-list"),
    ("json[0] == 1", "json[0] == 1 failed: json[0] is missing", "int-index-into-mapping"),
    ("mode.x == 1", "mode.x == 1 failed: mode.x is missing", "member-of-string"),
    (
        'disk.percent["/tmp"] < 90',
        'disk.percent["/tmp"] < 90 failed: disk.percent["/tmp"] is missing',
        "missing-key",
    ),
    (
        'json["status"] == 1',
        "json[\"status\"] == 1 failed: json.status is 'ok'",
        "index-shown-as-member",
    ),
    # type mismatches
    ("mode < 5", "mode < 5 failed: cannot compare 'degraded' < 5", "string-less-than-number"),
    ("healthy > 0", "healthy > 0 failed: cannot compare true > 0", "bool-is-not-ordered"),
    ("nothing >= 1", "nothing >= 1 failed: cannot compare null >= 1", "null-is-not-ordered"),
    ("tags < 1", "tags < 1 failed: cannot compare ['a', 'b'] < 1", "list-is-not-ordered"),
    ("mode + 1 > 0", "mode + 1 > 0 failed: cannot compute 'degraded' + 1", "string-arithmetic"),
    ("healthy * 2 > 0", "healthy * 2 > 0 failed: cannot compute true * 2", "bool-arithmetic"),
    ("-mode == 1", "-mode == 1 failed: cannot negate 'degraded'", "negate-string"),
    (
        "errors / zero < 1",
        "errors / zero < 1 failed: division by zero: zero is 0",
        "divide-by-zero-name",
    ),
    ("errors / 0 < 1", "errors / 0 < 1 failed: division by zero", "divide-by-zero-literal"),
    ("errors in 5", "errors in 5 failed: cannot test 3 in 5", "in-number"),
    (
        "errors in message",
        "errors in message failed: cannot test 3 in 'connection refused'",
        "number-in-string",
    ),
    (
        "1 in json",
        "1 in json failed: cannot test 1 in {'status': 'ok', 'count': 3, 'items': [{'id': 7}, {'id': ...",
        "number-in-mapping",
    ),
    ("mode", "mode failed: mode is 'degraded', not true/false or a number", "bare-string"),
    (
        "nothing and true",
        "nothing and true failed: nothing is null, not true/false or a number",
        "null-in-and",
    ),
    ("'yes'", "'yes' failed: the value is 'yes', not true/false or a number", "string-literal"),
]


@pytest.mark.parametrize(("text", "reason"), [c[:2] for c in FAILS], ids=[c[2] for c in FAILS])
def test_fails_with_reason(text: str, reason: str) -> None:
    assert check(text) == reason


def test_overflow_is_a_failure_not_an_exception() -> None:
    big = "9" * 400
    assert (
        check(f"{big} / 2.0 > 1")
        == f"{big} / 2.0 > 1 failed: number too large in {'9' * 57}... / 2.0"
    )


def test_huge_integers_are_shown_by_size() -> None:
    reason = check("big * big < 'a'", {"big": 10**4000})
    assert reason == "big * big < 'a' failed: cannot compare a 26576-bit integer < 'a'"


def test_empty_namespace_fails_every_name() -> None:
    assert check("status == 200", {}) == "status == 200 failed: status is missing"


SYNTAX_ERRORS = [
    ("status = 200", "unexpected token '=' at column 8 (did you mean '=='?)", 7, "single-equals"),
    ("! healthy", "unexpected token '!' at column 1 (did you mean '!=' or 'not'?)", 0, "bang"),
    ("a && b", "unexpected token '&&' at column 3 (did you mean 'and'?)", 2, "double-ampersand"),
    ("a || b", "unexpected token '||' at column 3 (did you mean 'or'?)", 2, "double-pipe"),
    ("a & b", "unexpected token '&' at column 3 (did you mean 'and'?)", 2, "ampersand"),
    ("a @ b", "unexpected token '@' at column 3", 2, "unknown-character"),
    ("x < " + "9" * 5000, "number too long at column 5", 4, "number-too-long"),
    ("é == 1", "unexpected token 'é' at column 1", 0, "non-ascii-name"),
    ("a == 'abc", "unterminated string starting at column 6", 5, "unterminated-single"),
    ('a "b', "unterminated string starting at column 3", 2, "unterminated-double"),
    ("a == 'x\\'", "unterminated string starting at column 6", 5, "escaped-closing-quote"),
    ("a == 'x\\", "unterminated string starting at column 6", 5, "trailing-backslash"),
    (
        "a == '\\q'",
        "unknown escape '\\q' at column 7 (known: \\\\ \\' \\\" \\n \\t \\r)",
        6,
        "unknown-escape",
    ),
    (
        "x == 5x",
        "invalid number '5x' at column 6 (a duration needs a unit: ms, s, m, h, d, w, e.g. 30s or 1h30m)",
        5,
        "number-with-letters",
    ),
    (
        "x == 1.2.3",
        "invalid number '1.2.3' at column 6 (a duration needs a unit: ms, s, m, h, d, w, e.g. 30s or 1h30m)",
        5,
        "two-dots",
    ),
    (
        "x == 1.",
        "invalid number '1.' at column 6 (a duration needs a unit: ms, s, m, h, d, w, e.g. 30s or 1h30m)",
        5,
        "trailing-dot",
    ),
    ("", "an expectation cannot be empty", 0, "empty"),
    ("   ", "an expectation cannot be empty", 0, "blank"),
    ("ok == 1 and", "expected a value after 'and' at column 12", 11, "nothing-after-and"),
    ("status ==", "expected a value after '==' at column 10", 9, "nothing-after-comparison"),
    (
        "a == )",
        "expected a value after '==' but found ')' at column 6",
        5,
        "paren-instead-of-value",
    ),
    ("== 1", "expected a value but found '==' at column 1", 0, "starts-with-operator"),
    ("a or or b", "expected a value after 'or' but found 'or' at column 6", 5, "doubled-or"),
    (
        "a == not b",
        "'not' at column 6 needs parentheses here, e.g. a == (not b)",
        5,
        "not-as-operand",
    ),
    (
        "a < b < c",
        "comparisons cannot be chained: '<' at column 7 follows another comparison (write 'a < b and b < c')",
        6,
        "chained-less-than",
    ),
    (
        "a == b != c",
        "comparisons cannot be chained: '!=' at column 8 follows another comparison (write 'a < b and b < c')",
        7,
        "chained-equality",
    ),
    (
        "not a in b in c",
        "comparisons cannot be chained: 'in' at column 12 follows another comparison (write 'a < b and b < c')",
        11,
        "chained-under-not",
    ),
    ("a not b", "expected 'in' after 'not' at column 7", 6, "not-without-in"),
    ("status == 200 300", "unexpected token '300' at column 15", 14, "trailing-token"),
    ("a b", "unexpected token 'b' at column 3", 2, "two-names"),
    ("len(x) > 1", "unexpected token '(' at column 4", 3, "no-function-calls"),
    (
        "(a == 1",
        "expected ')' to close the '(' at column 1, found the end of the expression at column 8",
        7,
        "unclosed-paren",
    ),
    (
        "(a == 1]",
        "expected ')' to close the '(' at column 1, found ']' at column 8",
        7,
        "wrong-closer",
    ),
    (
        "x in [1, 2",
        "expected ']' to close the list at column 6, found the end of the expression at column 11",
        10,
        "unclosed-list",
    ),
    (
        "x in [1 2]",
        "expected ']' to close the list at column 6, found '2' at column 9",
        8,
        "list-missing-comma",
    ),
    ("x in [,]", "expected a value after '[' but found ',' at column 7", 6, "list-leading-comma"),
    ("a.", "expected a name after '.' at column 3", 2, "dot-at-end"),
    ("a.1 == 1", "expected a name after '.' at column 3", 2, "dot-number"),
    ("a[b] == 1", "expected a string or integer index after '[' at column 3", 2, "name-as-index"),
    ("a[1.5] == 1", "expected a string or integer index after '[' at column 3", 2, "float-index"),
    ("a[5s] == 1", "expected a string or integer index after '[' at column 3", 2, "duration-index"),
    ("a[-1] == 1", "expected a string or integer index after '[' at column 3", 2, "negative-index"),
    ("a['x' == 1", "expected ']' to close the index, found '==' at column 7", 6, "unclosed-index"),
    ("(" * 70 + "a" + ")" * 70, "expression nested too deeply at column 65", 64, "too-deep"),
]


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [c[:3] for c in SYNTAX_ERRORS],
    ids=[c[3] for c in SYNTAX_ERRORS],
)
def test_syntax_error(text: str, message: str, position: int) -> None:
    with pytest.raises(ExpectationSyntaxError) as caught:
        parse_expectation(text)
    assert str(caught.value) == message
    assert caught.value.position == position


NAMES = [
    ("status == 200", {"status"}, "one"),
    ("json.status == 'ok' and json.status != 'x'", {"json.status"}, "deduplicated"),
    ('disk.percent["/"] < 90', {'disk.percent["/"]'}, "string-index"),
    ('json["status"] == 1', {"json.status"}, "identifier-index-shown-as-member"),
    ("json.items[0].id in [x, y.z]", {"json.items[0].id", "x", "y.z"}, "inside-list"),
    ("1 < 2 and true", set(), "none"),
]


@pytest.mark.parametrize(("text", "names"), [c[:2] for c in NAMES], ids=[c[2] for c in NAMES])
def test_names(text: str, names: set[str]) -> None:
    assert parse_expectation(text).names() == names


def test_expectation_is_immutable_and_keeps_its_source() -> None:
    expectation = parse_expectation("  status == 200 ")
    assert expectation.source == "  status == 200 "
    assert expectation == Expectation("  status == 200 ")
    assert hash(expectation) == hash(Expectation("  status == 200 "))
    assert repr(expectation) == "Expectation('  status == 200 ')"
    with pytest.raises(AttributeError):
        expectation.source = "other"
    names = expectation.names()
    names.add("mutated")
    assert expectation.names() == {"status"}


class Spec(BaseModel):
    expect: list[Expect]


def test_pydantic_parses_and_serialises() -> None:
    spec = Spec.model_validate({"expect": ["status == 200", parse_expectation("age_s < 5m")]})
    assert [e.check({"status": 200, "age_s": 1}) for e in spec.expect] == [None, None]
    assert spec.model_dump() == {"expect": ["status == 200", "age_s < 5m"]}
    assert Spec.model_validate_json(spec.model_dump_json()) == spec
    assert Spec.model_json_schema()["properties"]["expect"]["items"] == {"type": "string"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("status = 200", "unexpected token '=' at column 8 (did you mean '=='?)"),
        (200, "an expectation must be a string such as 'status == 200'"),
        (None, "an expectation must be a string such as 'status == 200'"),
    ],
    ids=["syntax-error", "number", "null"],
)
def test_pydantic_reports_value_error(value: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Spec.model_validate({"expect": [value]})
    [error] = caught.value.errors()
    assert error["type"] == "value_error"
    assert error["loc"] == ("expect", 0)
    assert error["msg"] == f"Value error, {message}"


# ---------------------------------------------------------------- properties

OPERATORS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
numbers = st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=True)


@given(a=numbers, b=numbers, op=st.sampled_from(sorted(OPERATORS)))
def test_numeric_comparisons_agree_with_python(a: float, b: float, op: str) -> None:
    result = parse_expectation(f"a {op} b").check({"a": a, "b": b})
    assert (result is None) == OPERATORS[op](a, b)


@given(
    a=st.integers(-1000, 1000),
    b=st.integers(-1000, 1000),
    c=st.integers(-1000, 1000),
    op=st.sampled_from(sorted(OPERATORS)),
)
def test_integer_literal_arithmetic_agrees_with_python(a: int, b: int, c: int, op: str) -> None:
    # Literals, unary minus and precedence: `a + b * c - a op c` parsed as Python would.
    expected = OPERATORS[op](a + b * c - a, c)
    result = parse_expectation(f"{a} + {b} * {c} - {a} {op} {c}").check({})
    assert (result is None) == expected


TOKENS = [
    "a", "b.c", "x[0]", 'd["k"]', "1", "2.5", "5m", "'s'", '"t"', "true", "false", "null",
    "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "and", "or", "not", "in",
    "(", ")", "[", "]", ",", ".", "=", "!", "'", "\\", "@", "1x",
]  # fmt: skip
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abcx"), inner),
    max_leaves=8,
)


@given(text=st.text(max_size=40) | st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join))
def test_parse_raises_only_syntax_errors(text: str) -> None:
    try:
        expectation = parse_expectation(text)
    except ExpectationSyntaxError as error:
        assert error.position is not None and 0 <= error.position <= len(text)
        assert f"column {error.position + 1}" in str(error) or "empty" in str(error)
        return
    assert expectation.source == text


@given(
    tokens=st.lists(st.sampled_from(TOKENS), max_size=12),
    namespace=st.dictionaries(st.sampled_from("abcdx"), VALUES),
)
def test_check_never_raises(tokens: list[str], namespace: dict[str, Any]) -> None:
    try:
        expectation = parse_expectation(" ".join(tokens))
    except ExpectationSyntaxError:
        return
    result = expectation.check(namespace)
    assert result is None or (
        result.startswith(f"{expectation.source} failed: ") and "\n" not in result
    )
