"""The reconciliation engine behind the `reconcile` probe.

It compares a keyed data set on two sources and returns every key that is missing on
one side or whose compared values differ beyond tolerance, with both values.

    engine.py    one run: choose the path (full or checksum) and compare
    checksum.py  the checksum levels: per-cell count + sum(hash), recurse, pull
    grids.py     how keys are cut into cells (integer ranges or key-hash residues)
    hashing.py   the row hash, in SQL per dialect and in Python, identical everywhere
    sides.py     a side answered by SQL (SqlSide) or from memory (LocalSide)
    concurrency.py  both sides at once
    loaders.py   connectors to sides (SQLite and Redis hashes are read whole)
    compare.py   row comparison with tolerance; Difference, ReconcileError
    values.py    value kinds and normalization across drivers
    grace.py     grace windows: a difference counts after N runs in a row
"""

from __future__ import annotations

from agent.reconcile.compare import Difference, ReconcileError, Tolerance
from agent.reconcile.engine import Outcome, Plan, Previous, reconcile
from agent.reconcile.grace import Graced, apply_grace
from agent.reconcile.loaders import redis_side, sql_side
from agent.reconcile.sides import Columns, Deadline, Side

__all__ = [
    "Columns",
    "Deadline",
    "Difference",
    "Graced",
    "Outcome",
    "Plan",
    "Previous",
    "ReconcileError",
    "Side",
    "Tolerance",
    "apply_grace",
    "reconcile",
    "redis_side",
    "sql_side",
]
