"""PLACEHOLDER until the expectations module lands (same public API)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer


class Expectation:
    """A parsed expectation expression."""

    def __init__(self, source: str) -> None:
        self.source = source

    def check(self, namespace: Mapping[str, Any]) -> str | None:
        """None when the expectation holds, else a one-line reason."""
        return None


def parse_expectation(text: str) -> Expectation:
    """Parse an expression; raises ExpectationSyntaxError."""
    return Expectation(text)


def _coerce(value: Any) -> Expectation:
    if isinstance(value, Expectation):
        return value
    if not isinstance(value, str):
        raise ValueError("an expectation must be a string such as 'status == 200'")
    return parse_expectation(value)


Expect = Annotated[
    Expectation,
    BeforeValidator(_coerce),
    PlainSerializer(lambda e: e.source, return_type=str),
]
