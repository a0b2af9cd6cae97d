"""Row comparison, tolerance, value kinds and grace windows (no servers needed)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from agent.reconcile.compare import Difference, ReconcileError, Tolerance, differences, keyed
from agent.reconcile.grace import apply_grace
from agent.reconcile.values import IncompatibleKinds, agree, kind_of, parse_number, to_json

EXACT = (Tolerance(),)


def test_differences_by_kind() -> None:
    left = keyed([(1, 10), (2, 20), (3, None)], 1, "left")
    right = keyed([(2, Decimal("20.00")), (3, None), (4, 1)], 1, "right")
    assert differences(left, right, EXACT) == [
        Difference((1,), "missing_right", (10,), None),
        Difference((4,), "missing_left", None, (1,)),
    ]


@pytest.mark.parametrize(
    ("tolerance", "a", "b", "same"),
    [
        (Tolerance(), 1, 1, True),
        (Tolerance(), Decimal("0.1"), 0.1, True),  # floats compare by their shortest decimal
        (Tolerance(absolute=Decimal("0.5")), 10, Decimal("10.5"), True),
        (Tolerance(absolute=Decimal("0.5")), 10, Decimal("10.51"), False),
        (Tolerance(relative=Decimal("0.01")), 100, 101, True),
        (Tolerance(relative=Decimal("0.01")), 100, Decimal("101.1"), False),
        (Tolerance(relative=Decimal("0.01")), 0, Decimal("0.001"), False),
        (Tolerance(absolute=Decimal(1)), None, 0, False),
        (Tolerance(absolute=Decimal(1)), "a", "a", True),
        (Tolerance(), Decimal("NaN"), Decimal("NaN"), True),
    ],
)
def test_tolerance(tolerance: Tolerance, a: Any, b: Any, same: bool) -> None:
    left = keyed([(1, a)], 1, "left")
    right = keyed([(1, b)], 1, "right")
    assert (differences(left, right, (tolerance,)) == []) is same


def test_keys_must_be_unique_and_not_null() -> None:
    with pytest.raises(ReconcileError, match="the left side has the key 'a' more than once"):
        keyed([("a", 1), ("a", 2)], 1, "left")
    with pytest.raises(
        ReconcileError, match=r"the right side has a row with a NULL key: \(1, None\)"
    ):
        keyed([(1, None, 5)], 2, "right")


@pytest.mark.parametrize(
    ("left", "right", "agreed"),
    [
        ("int", "int", "int"),
        ("int", "decimal", "decimal"),
        (None, "text", "text"),
        (None, None, "text"),
        ("date", "text", "text"),
    ],
)
def test_kinds_agree(left: Any, right: Any, agreed: str) -> None:
    assert agree(left, right) == agreed


def test_kinds_that_cannot_agree() -> None:
    with pytest.raises(IncompatibleKinds, match="int on the left but text on the right"):
        agree("int", "text")
    with pytest.raises(IncompatibleKinds, match="datetime values cannot be checksummed"):
        agree(kind_of(datetime(2024, 1, 1)), "text")
    assert kind_of(True) == "bool"
    assert kind_of(date(2024, 1, 1)) == "date"


def test_evidence_values_are_exact_json() -> None:
    assert to_json(Decimal("5.00")) == 5
    assert to_json(Decimal("19.99")) == 19.99
    assert to_json(Decimal("0.12345678901234567890")) == "0.12345678901234567890"
    assert to_json(date(2024, 1, 2)) == "2024-01-02"
    assert parse_number(" 12 ") == 12
    assert parse_number("1.50") == Decimal("1.50")
    assert parse_number("NaN") == "NaN"
    assert parse_number("n/a") == "n/a"


def test_grace_streaks() -> None:
    a = Difference((1,), "mismatch", (1,), (2,))
    b = Difference((2,), "missing_left", None, (2,))
    first = apply_grace([a, b], {}, 2)
    assert (first.counted, first.pending) == ([], [a, b])
    second = apply_grace([a], first.streaks, 2)  # b agreed again: its streak ends
    assert (second.counted, second.pending, second.streaks) == ([a], [], {(1,): 2})
    third = apply_grace([b], second.streaks, 2)
    assert (third.counted, third.pending) == ([], [b])
    assert apply_grace([a], {}, 1).counted == [a]
