"""What every SQL connector shares: one placeholder style, one statement, one-line errors.

Users write the same placeholders on every dialect:

    WHERE status = :status AND created_at < :since    -- with params: {status: ..., since: ...}
    WHERE status = ? AND created_at < ?               -- with params: [..., ...]

and `prepare()` rewrites them to the driver's own style (psycopg and PyMySQL take
`%(name)s` / `%s`, DuckDB `$name` / `?`, SQLite takes both forms natively). The values
always travel separately from the SQL, so a value can never change the statement.
Placeholders inside string literals, quoted identifiers, comments and PostgreSQL
dollar quotes are left alone, and `::type` casts are not placeholders. Without params
nothing is rewritten: `?` (the jsonb operator) and `%` work as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from agent.connectors import Params, SourceError, SqlDialect
from agent.durations import format_duration
from agent.redaction import Redactor

# Tokens whose insides are never placeholders, per dialect. Order matters: the regex
# tries them before the placeholder alternatives below.
_COMMENTS = r"--[^\n]*|/\*.*?\*/"
_SKIP = {
    "postgres": [
        r"[eE]'(?:[^'\\]|\\.|'')*'",  # E'...' strings allow backslash escapes
        r"'(?:[^']|'')*'",
        r'"(?:[^"]|"")*"',
        r"\$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?\$(?P=tag)\$",  # $$...$$ and $tag$...$tag$
        r"::",
        _COMMENTS,
    ],
    "mysql": [
        r"'(?:[^'\\]|\\.|'')*'",
        r'"(?:[^"\\]|\\.|"")*"',  # a string, unless ANSI_QUOTES: either way not SQL text
        r"`(?:[^`]|``)*`",
        r"#[^\n]*",
        _COMMENTS,
    ],
    "sqlite": [
        r"'(?:[^']|'')*'",
        r'"(?:[^"]|"")*"',
        r"`(?:[^`]|``)*`",
        r"\[[^\]]*\]",
        _COMMENTS,
    ],
    "duckdb": [
        r"[eE]'(?:[^'\\]|\\.|'')*'",
        r"'(?:[^']|'')*'",
        r'"(?:[^"]|"")*"',
        r"\$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?\$(?P=tag)\$",
        r"::",
        _COMMENTS,
    ],
}
_LEXERS = {
    dialect: re.compile(
        "(?P<skip>" + "|".join(skips) + r")|(?P<named>(?<![:\w]):[A-Za-z_]\w*)"
        r"|(?P<qmark>\?)|(?P<semi>;)|(?P<percent>%)",
        re.S,
    )
    for dialect, skips in _SKIP.items()
}
_ONLY_COMMENTS = re.compile(r"(?:\s+|--[^\n]*|#[^\n]*|/\*.*?\*/)*", re.S)


def prepare(sql: str, params: Params, dialect: SqlDialect) -> tuple[str, Any]:
    """The SQL and params in the driver's style; SourceError for a misuse.

    Checks that the text is one statement (a trailing `;` is dropped) and, with
    params, that every `:name` has a value or that the `?` count matches.
    """
    lexer = _LEXERS[dialect]
    pyformat = dialect in ("postgres", "mysql")
    rewrite = params is not None
    named = isinstance(params, Mapping)
    if rewrite and not named and isinstance(params, str | bytes):
        raise SourceError("params must be a list or a mapping, not a string")
    out: list[str] = []
    used: list[str] = []
    qmarks = 0
    pos = 0
    for match in lexer.finditer(sql):
        out.append(sql[pos : match.start()])
        pos = match.end()
        token = match.group()
        kind = match.lastgroup
        if kind == "semi":
            if not _ONLY_COMMENTS.fullmatch(sql, pos):
                raise SourceError("only one SQL statement is allowed per query (text after ';')")
            pos = len(sql)
            break
        if not rewrite:
            out.append(token)
        elif kind == "named":
            used.append(token[1:])
            out.append(_named(token[1:], dialect))
        elif kind == "qmark":
            qmarks += 1
            out.append("%s" if pyformat else "?")
        elif pyformat:
            # The drivers read `%` everywhere in the text, literals included, once
            # params are given: a literal percent must be doubled.
            out.append(token.replace("%", "%%"))
        else:
            out.append(token)
    out.append(sql[pos:])
    text = "".join(out).rstrip()
    if not rewrite:
        return text, None
    if used and qmarks:
        raise SourceError("use either :name placeholders with a mapping or ? with a list, not both")
    if named:
        assert isinstance(params, Mapping)
        missing = sorted({name for name in used if name not in params})
        if missing:
            raise SourceError(f"no value for parameter :{missing[0]} (params: {sorted(params)})")
        if dialect == "duckdb":  # DuckDB refuses values it has no placeholder for
            return text, {name: params[name] for name in used}
        return text, dict(params)
    assert isinstance(params, Sequence)
    if used:
        raise SourceError(f"the query uses :{used[0]}, so params must be a mapping, not a list")
    if qmarks != len(params):
        raise SourceError(f"the query has {qmarks} ? placeholders but {len(params)} params")
    return text, list(params) if dialect == "duckdb" else tuple(params)


def _named(name: str, dialect: SqlDialect) -> str:
    if dialect in ("postgres", "mysql"):
        return f"%({name})s"
    if dialect == "duckdb":
        return f"${name}"
    return f":{name}"


def seconds(value: float) -> str:
    """`2.0` -> `2s`, `0.8` -> `800ms`: durations in the config's own units."""
    return format_duration(timedelta(seconds=value))


def one_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of a driver message, trimmed to `limit` characters."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[: limit - 3] + "..."


def source_error(message: str, redactor: Redactor) -> SourceError:
    """A SourceError with one secret-free line."""
    return SourceError(redactor.redact(one_line(message)) or "unknown error")
