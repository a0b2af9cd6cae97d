"""Grace windows: a difference counts only once the same key differed in N runs in a row.

Two systems that are eventually consistent disagree for a moment after every change;
`grace: 2` waits one more run before calling that a mismatch. The streak of every
differing key is kept between runs (in the probe's `ctx.state`); a key that agrees
again, or whose difference was not seen in a run, starts over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agent.reconcile.compare import Difference, Key


@dataclass(frozen=True)
class Graced:
    """The differences that count this run, those still waiting, and the new streaks."""

    counted: list[Difference]
    pending: list[Difference]
    streaks: dict[Key, int]


def apply_grace(diffs: list[Difference], streaks: Mapping[Key, int], grace: int) -> Graced:
    """Split `diffs` by whether their key has now differed in `grace` consecutive runs."""
    new_streaks = {d.key: streaks.get(d.key, 0) + 1 for d in diffs}
    counted = [d for d in diffs if new_streaks[d.key] >= grace]
    pending = [d for d in diffs if new_streaks[d.key] < grace]
    return Graced(counted, pending, new_streaks)
