"""The `expect:` language: small, safe expressions over a probe's values.

    status == 200
    json.status == "ok" and latency_ms < 300
    disk.percent["/"] < 90
    not (errors > 0 and mode != 'degraded')
    age_s < 5m                      # a duration literal is a number of SECONDS: 5m == 300
    region in ["eu", "us"]          # list membership; "err" in message is a substring test

Grammar, loosest binding first (as in Python: `not a == b` means `not (a == b)`):

    or       := and ('or' and)*
    and      := not ('and' not)*
    not      := 'not' not | compare
    compare  := sum (('==' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | 'not in') sum)?
    sum      := product (('+' | '-') product)*       (no chains: `a < b < c` is an error)
    product  := unary (('*' | '/') unary)*
    unary    := '-' unary | primary
    primary  := number | duration | string | 'true' | 'false' | 'null'
              | name ('.' name | '[' (string | integer) ']')* | '(' expr ')' | '[' expr, ... ']'

Nothing is passed to `eval`: a hand-written tokenizer and precedence-climbing parser
build a small AST once at config load, compiled at once into nested closures that
`check()` calls (a few µs per check: it runs for every probe result). A missing name,
a type mismatch or a division by zero never raises: the expectation fails with a reason.
"""

from __future__ import annotations

import functools
import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, GetCoreSchemaHandler, PlainSerializer, WithJsonSchema
from pydantic_core import CoreSchema, core_schema

from agent.durations import parse_duration
from agent.errors import ExpectationSyntaxError

# ---------------------------------------------------------------- tokenizer

_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
_SYMBOLS = ("==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "(", ")", "[", "]", ",", ".")
# Operators people bring from other languages get a hint instead of a bare "unexpected".
_HINTS = {"&&": "'and'", "||": "'or'", "=": "'=='", "!": "'!=' or 'not'", "&": "'and'", "|": "'or'"}
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A number is read as one word up to the next operator, so `5x` or `1.2.3` is reported
# whole instead of as two tokens that produce a confusing parse error later.
_NUMBER_WORD = re.compile(r"[0-9][A-Za-z0-9_.]*")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
_DURATION = re.compile(r"([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+")
_MAX_DEPTH = 64  # parentheses/`not` nesting; keeps recursion far below Python's limit


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "number", "string", "name", "keyword", "symbol" or "end"
    text: str  # the source text, for error messages
    pos: int  # 0-based offset into the source
    value: Any = None  # the literal's value for numbers and strings

    def describe(self) -> str:
        return "the end of the expression" if self.kind == "end" else repr(self.text)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif ch in "'\"":
            token = _read_string(text, i)
            tokens.append(token)
            i += len(token.text)
        elif match := _NAME.match(text, i):
            word = match.group()
            tokens.append(_Token("keyword" if word in _KEYWORDS else "name", word, i))
            i = match.end()
        elif match := _NUMBER_WORD.match(text, i):
            tokens.append(_number(match.group(), i))
            i = match.end()
        elif symbol := next((s for s in _SYMBOLS if text.startswith(s, i)), None):
            tokens.append(_Token("symbol", symbol, i))
            i += len(symbol)
        else:
            wrong = next((h for h in _HINTS if text.startswith(h, i)), ch)
            hint = f" (did you mean {_HINTS[wrong]}?)" if wrong in _HINTS else ""
            raise ExpectationSyntaxError(f"unexpected token {wrong!r} at column {i + 1}{hint}", i)
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _read_string(text: str, start: int) -> _Token:
    quote, chars, i = text[start], [], start + 1
    while i < len(text) and text[i] != quote:
        if text[i] == "\\" and i + 1 < len(text):
            if text[i + 1] not in _ESCAPES:
                raise ExpectationSyntaxError(
                    f"unknown escape '\\{text[i + 1]}' at column {i + 1} "
                    "(known: \\\\ \\' \\\" \\n \\t \\r)",
                    i,
                )
            chars.append(_ESCAPES[text[i + 1]])
            i += 2
        else:
            chars.append(text[i])
            i += 1
    if i >= len(text):
        raise ExpectationSyntaxError(f"unterminated string starting at column {start + 1}", start)
    return _Token("string", text[start : i + 1], start, "".join(chars))


def _number(word: str, pos: int) -> _Token:
    if match := _NUMBER.fullmatch(word):
        try:
            value: float = float(word) if match.group(1) else int(word)
        except ValueError:  # Python refuses int() of more than 4300 digits
            raise ExpectationSyntaxError(f"number too long at column {pos + 1}", pos) from None
    elif _DURATION.fullmatch(word):
        value = parse_duration(word).total_seconds()
    else:
        raise ExpectationSyntaxError(
            f"invalid number {word!r} at column {pos + 1} "
            "(a duration needs a unit: ms, s, m, h, d, w, e.g. 30s or 1h30m)",
            pos,
        )
    return _Token("number", word, pos, value)


# ---------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class _Name:
    path: tuple[str | int, ...]  # json.items[0]["id"] -> ("json", "items", 0, "id")

    @property
    def dotted(self) -> str:
        # One spelling per name: json["status"] is shown as json.status.
        text = str(self.path[0])
        for key in self.path[1:]:
            if isinstance(key, int):
                text += f"[{key}]"
            elif _NAME.fullmatch(key):
                text += f".{key}"
            else:
                text += f"[{json.dumps(key, ensure_ascii=False)}]"
        return text


@dataclass(frozen=True, slots=True)
class _List:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Unary:
    op: str  # "not" or "-"
    operand: _Node


@dataclass(frozen=True, slots=True)
class _Binary:
    op: str  # "and", "or", a comparison or an arithmetic operator
    left: _Node
    right: _Node


_Node = _Literal | _Name | _List | _Unary | _Binary

# ---------------------------------------------------------------- parser

_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in", "not in"})
_PRECEDENCE = {"or": 1, "and": 2, **dict.fromkeys(_COMPARISONS, 4), "+": 5, "-": 5, "*": 6, "/": 6}
_NOT_PRECEDENCE = 3  # between `and` and the comparisons, as in Python
_NEGATE_PRECEDENCE = 7  # tighter than `*`: -a * b is (-a) * b


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.names: set[str] = set()

    def parse(self) -> _Node:
        if self.peek().kind == "end":
            raise ExpectationSyntaxError("an expectation cannot be empty", 0)
        node = self.expr(1)
        if (token := self.peek()).kind != "end":
            raise self.error(f"unexpected token {token.describe()} at column {token.pos + 1}")
        return node

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        token = self.peek()
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return token

    def error(self, message: str) -> ExpectationSyntaxError:
        return ExpectationSyntaxError(message, self.peek().pos)

    def at(self, text: str) -> bool:
        """Whether the next token is the symbol or keyword `text`."""
        return self.peek().kind in ("symbol", "keyword") and self.peek().text == text

    def expect_symbol(self, symbol: str, why: str) -> None:
        if not self.at(symbol):
            token = self.peek()
            raise self.error(
                f"expected {symbol!r} {why}, found {token.describe()} at column {token.pos + 1}"
            )
        self.advance()

    def expr(self, min_precedence: int) -> _Node:
        """Precedence climbing: fold operators binding at least as tight as min_precedence."""
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.error(f"expression nested too deeply at column {self.peek().pos + 1}")
        left = self.prefix(min_precedence)
        compared = False
        while (op := self.infix_operator()) and _PRECEDENCE[op] >= min_precedence:
            token = self.advance()
            if op == "not in":
                self.advance()
            if op in _COMPARISONS and compared:
                raise ExpectationSyntaxError(
                    f"comparisons cannot be chained: {op!r} at column {token.pos + 1} follows "
                    "another comparison (write 'a < b and b < c')",
                    token.pos,
                )
            compared = op in _COMPARISONS
            right = self.expr(_PRECEDENCE[op] + 1)  # + 1: every binary operator is left-associative
            left = _Binary(op, left, right)
        self.depth -= 1
        return left

    def infix_operator(self) -> str | None:
        token = self.peek()
        if self.at("not"):
            if self.peek(1).text == "in":
                return "not in"
            where = self.peek(1).pos
            raise ExpectationSyntaxError(f"expected 'in' after 'not' at column {where + 1}", where)
        if token.kind in ("symbol", "keyword") and token.text in _PRECEDENCE:
            return token.text
        return None

    def prefix(self, min_precedence: int) -> _Node:
        token = self.peek()
        if self.at("not"):
            if min_precedence > _NOT_PRECEDENCE:
                raise self.error(
                    f"'not' at column {token.pos + 1} needs parentheses here, e.g. a == (not b)"
                )
            self.advance()
            return _Unary("not", self.expr(_NOT_PRECEDENCE))
        if self.at("-"):
            self.advance()
            return _Unary("-", self.expr(_NEGATE_PRECEDENCE))
        return self.primary()

    def primary(self) -> _Node:
        token = self.peek()
        if token.kind in ("number", "string"):
            self.advance()
            return _Literal(token.value)
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            self.advance()
            return _Literal({"true": True, "false": False, "null": None}[token.text])
        if token.kind == "name":
            return self.name()
        if self.at("("):
            self.advance()
            node = self.expr(1)
            self.expect_symbol(")", f"to close the '(' at column {token.pos + 1}")
            return node
        if self.at("["):
            return self.list_literal()
        previous = self.tokens[self.i - 1] if self.i > 0 else None
        after = f" after {previous.text!r}" if previous else ""
        found = "" if token.kind == "end" else f" but found {token.describe()}"
        raise self.error(f"expected a value{after}{found} at column {token.pos + 1}")

    def name(self) -> _Node:
        path: list[str | int] = [self.advance().text]
        while self.at(".") or self.at("["):
            if self.advance().text == ".":
                token = self.peek()
                if token.kind not in ("name", "keyword"):  # `json.in` is a fine key name
                    raise self.error(f"expected a name after '.' at column {token.pos + 1}")
                path.append(self.advance().text)
                continue
            token = self.peek()
            if token.kind == "string" or (token.kind == "number" and token.text.isdigit()):
                path.append(self.advance().value)
            else:
                raise self.error(
                    f"expected a string or integer index after '[' at column {token.pos + 1}"
                )
            self.expect_symbol("]", "to close the index")
        node = _Name(tuple(path))
        self.names.add(node.dotted)
        return node

    def list_literal(self) -> _Node:
        opening = self.advance()
        items: list[_Node] = []
        while not self.at("]"):
            items.append(self.expr(1))
            if not self.at(","):
                self.expect_symbol("]", f"to close the list at column {opening.pos + 1}")
                return _List(tuple(items))
            self.advance()
        self.advance()
        return _List(tuple(items))


# ---------------------------------------------------------------- evaluator


class _Failure(Exception):
    """The expression could not be evaluated; the message is the reason shown to users."""


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
}  # fmt: skip


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A value as the user wrote it in the language, shortened to keep reasons one line."""
    if value is None or isinstance(value, bool):
        text = {None: "null", True: "true", False: "false"}[value]
    elif isinstance(value, int) and value.bit_length() > 10_000:  # repr() refuses > 4300 digits
        text = f"a {value.bit_length()}-bit integer"
    elif isinstance(value, str | int | float):
        text = repr(value)  # repr escapes newlines, so a reason stays on one line
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{_show(k)}: {_show(v)}" for k, v in value.items()) + "}"
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _equal(a: Any, b: Any) -> bool:
    # Python says True == 1; here a boolean equals only a boolean.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _truth(node: _Node, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if _is_number(value):
        return bool(value != 0)
    label = node.dotted if isinstance(node, _Name) else "the value"
    raise _Failure(f"{label} is {_show(value)}, not true/false or a number")


# An expression compiles, once at parse time, to nested closures: `fn(namespace, seen)`
# returns its value and records each name it looked up in `seen` (for the failure
# reason), or raises _Failure. ~3x cheaper per check than walking the tree each run.
_Compiled = Callable[[Mapping[str, Any], dict[str, Any]], Any]


def _compile(node: _Node) -> _Compiled:
    if isinstance(node, _Literal):
        value = node.value
        return lambda namespace, seen: value
    if isinstance(node, _Name):
        return _compile_name(node)
    if isinstance(node, _List):
        items = tuple(_compile(item) for item in node.items)
        return lambda namespace, seen: [item(namespace, seen) for item in items]
    if isinstance(node, _Unary):
        return _compile_unary(node)
    return _compile_binary(node)


def _compile_name(node: _Name) -> _Compiled:
    path, dotted = node.path, node.dotted
    missing = f"{dotted} is missing"

    def lookup(namespace: Mapping[str, Any], seen: dict[str, Any]) -> Any:
        value: Any = namespace
        for key in path:
            if isinstance(value, dict | Mapping):  # dict first: the cheap check
                if key not in value:
                    raise _Failure(missing)
            elif not (
                isinstance(value, list | tuple) and isinstance(key, int) and key < len(value)
            ):
                raise _Failure(missing)
            value = value[key]
        if isinstance(value, Decimal):  # SQL drivers return Decimal; it does not mix with float
            value = float(value)
        seen[dotted] = value
        return value

    return lookup


def _compile_unary(node: _Unary) -> _Compiled:
    operand, inner = _compile(node.operand), node.operand
    if node.op == "not":
        return lambda namespace, seen: not _truth(inner, operand(namespace, seen))

    def negate(namespace: Mapping[str, Any], seen: dict[str, Any]) -> Any:
        value = operand(namespace, seen)
        if not _is_number(value):
            raise _Failure(f"cannot negate {_show(value)}")
        return -value

    return negate


def _compile_binary(node: _Binary) -> _Compiled:
    op, left, right = node.op, _compile(node.left), _compile(node.right)
    left_node, right_node = node.left, node.right
    if op in ("and", "or"):
        is_or = op == "or"

        def logic(namespace: Mapping[str, Any], seen: dict[str, Any]) -> Any:
            if _truth(left_node, left(namespace, seen)) == is_or:
                return is_or  # short-circuit: `a or b` is true, `a and b` false
            return _truth(right_node, right(namespace, seen))

        return logic
    if op in ("==", "!="):
        equal = op == "=="
        return lambda namespace, seen: (
            _equal(left(namespace, seen), right(namespace, seen)) == equal
        )
    if op in ("in", "not in"):
        inside = op == "in"

        def contains(namespace: Mapping[str, Any], seen: dict[str, Any]) -> Any:
            item = left(namespace, seen)
            return _contains(right(namespace, seen), item) == inside

        return contains
    if op in _ORDER:
        compare = _ORDER[op]

        def order(namespace: Mapping[str, Any], seen: dict[str, Any]) -> Any:
            a, b = left(namespace, seen), right(namespace, seen)
            if (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
                return compare(a, b)
            raise _Failure(f"cannot compare {_show(a)} {op} {_show(b)}")

        return order
    compute = _ARITHMETIC[op]

    def arithmetic(namespace: Mapping[str, Any], seen: dict[str, Any]) -> Any:
        a, b = left(namespace, seen), right(namespace, seen)
        if not (_is_number(a) and _is_number(b)):
            raise _Failure(f"cannot compute {_show(a)} {op} {_show(b)}")
        if op == "/" and b == 0:
            because = f": {right_node.dotted} is 0" if isinstance(right_node, _Name) else ""
            raise _Failure(f"division by zero{because}")
        try:
            return compute(a, b)
        except OverflowError:  # huge int mixed with a float
            raise _Failure(f"number too large in {_show(a)} {op} {_show(b)}") from None

    return arithmetic


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, list | tuple):
        return any(_equal(item, element) for element in container)
    if isinstance(container, str) and isinstance(item, str):
        return item in container
    if isinstance(container, Mapping) and isinstance(item, str):
        return item in container  # `"error" in json`: a key test
    raise _Failure(f"cannot test {_show(item)} in {_show(container)}")


# ---------------------------------------------------------------- public API


class Expectation:
    """A parsed, immutable expectation; `source` is the text it was parsed from.

    `Expectation(text)` parses like `parse_expectation(text)`.
    """

    __slots__ = ("_fn", "_names", "_tree", "source")
    source: str
    _tree: _Node
    _fn: _Compiled
    _names: frozenset[str]

    def __init__(self, source: str) -> None:
        parser = _Parser(source)
        tree = parser.parse()
        object.__setattr__(self, "_tree", tree)
        object.__setattr__(self, "_fn", _compile(tree))
        object.__setattr__(self, "_names", frozenset(parser.names))
        object.__setattr__(self, "source", source)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("an Expectation is immutable")

    def __repr__(self) -> str:
        return f"Expectation({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expectation) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def check(self, namespace: Mapping[str, Any]) -> str | None:
        """Evaluate against `namespace`: None when it holds, else a one-line reason.

        The reason names the values looked up (`status == 200 failed: status is 503`)
        or what went wrong (`... failed: json.status is missing`). Never raises.
        """
        seen: dict[str, Any] = {}  # names looked up, in order, for the failure reason
        try:
            if _truth(self._tree, self._fn(namespace, seen)):
                return None
        except _Failure as failure:
            return f"{self.source} failed: {failure}"
        facts = ", ".join(f"{name} is {_show(value)}" for name, value in seen.items())
        return f"{self.source} failed: {facts or 'it is false'}"

    def names(self) -> set[str]:
        """The names referenced, one spelling each: {"json.status", 'disk.percent["/"]'}."""
        return set(self._names)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        # Strings are parsed by Expect's BeforeValidator; what reaches here is an instance.
        return core_schema.is_instance_schema(cls)


def parse_expectation(text: str) -> Expectation:
    """Parse an expectation; raises ExpectationSyntaxError saying what was expected and where."""
    return Expectation(text)


# Configs repeat the same few expectations over thousands of probes; an Expectation is
# immutable, so one parse serves them all.
_parse_cached = functools.lru_cache(maxsize=4096)(parse_expectation)


def _coerce(value: Any) -> Expectation:
    if isinstance(value, Expectation):
        return value
    if not isinstance(value, str):
        raise ValueError("an expectation must be a string such as 'status == 200'")
    try:
        return _parse_cached(value)
    except ExpectationSyntaxError as error:
        # pydantic reports ValueError with the field's location (and the config loader the YAML line).
        raise ValueError(str(error)) from None


Expect = Annotated[
    Expectation,
    BeforeValidator(_coerce),
    PlainSerializer(lambda e: e.source, return_type=str),
    WithJsonSchema({"type": "string"}),
]
"""A pydantic field type: accepts an expression string, holds an Expectation, dumps the string."""
