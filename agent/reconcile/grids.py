"""How the key space is cut into cells whose checksums are compared.

Two kinds of grid, chosen once per run:

- `RangeGrid` when the key is one integer column on both sides: a cell is a run of
  `width` consecutive key values. A cell's rows are found with `key BETWEEN a AND b`,
  which uses the key's index, so looking inside a differing cell reads only that cell.
- `HashGrid` for any other key (text, several columns): a cell is `key_hash %
  modulus`. This is independent of collation (a PostgreSQL `C` collation and a
  MariaDB `utf8mb4_general_ci` one sort text differently, so text ranges would not
  match), but every look inside a cell scans the whole query again.

A finer grid (`refine`) splits every cell into children that never straddle two
parents: range widths are chosen so that each level divides the one above, hash
moduli multiply. That lets one query per side restrict to the differing parent cells
and group by child cell.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from agent.reconcile.hashing import Dialect, P

FANOUT = 16  # children per cell when a differing cell is too big to pull


def range_width(span: int, cells: int) -> int:
    """A level-1 width near `span / cells` that FANOUT divides down to 1 exactly.

    The width is m * FANOUT^k with m < FANOUT, so each refinement divides it by
    FANOUT until m remains, and m then splits into single keys.
    """
    width = max(1, -(-span // max(1, cells)))
    power = 1
    while power * FANOUT <= width:
        power *= FANOUT
    return -(-width // power) * power


@dataclass(frozen=True)
class RangeGrid:
    """Cell i holds the keys `lo + i*width` ... `lo + (i+1)*width - 1`; no key is above `hi`."""

    lo: int
    width: int
    hi: int | None = None

    @property
    def last_cell(self) -> int | None:
        """The highest cell number, when `hi` is known."""
        return None if self.hi is None else self.cell(self.hi)

    def cell(self, key: int) -> int:
        """The cell of one key."""
        return (key - self.lo) // self.width

    def refine(self) -> RangeGrid:
        """The next finer grid; its cells nest inside this grid's cells."""
        width = self.width // FANOUT if self.width % FANOUT == 0 else 1
        return RangeGrid(self.lo, width, self.hi)

    @property
    def atomic(self) -> bool:
        """True when a cell is a single key: there is nothing left to split."""
        return self.width == 1

    def parent(self, cell: int, finer: Grid) -> int:
        """The cell of this grid that holds `finer`'s cell."""
        assert isinstance(finer, RangeGrid)
        return cell * finer.width // self.width

    def bucket_sql(self, dialect: Dialect, key: str) -> str:
        """The SQL for a row's cell number."""
        if dialect == "mysql":
            return f"(({key} - ({self.lo})) DIV {self.width})"
        division = "//" if dialect == "duckdb" else "/"
        return f"((CAST({key} AS BIGINT) - ({self.lo})) {division} {self.width})"

    def where_sql(self, key: str, cells: Collection[int]) -> str:
        """A predicate for the rows of `cells`; adjacent cells become one BETWEEN."""
        ranges = [
            f"{key} BETWEEN {self.lo + first * self.width} AND {self.lo + (last + 1) * self.width - 1}"
            for first, last in _runs(cells)
        ]
        return "(" + " OR ".join(ranges) + ")"


@dataclass(frozen=True)
class HashGrid:
    """Cell c holds the keys whose key hash h (in [0, P)) has `h % modulus == c`."""

    modulus: int

    def cell(self, key_hash: int) -> int:
        """The cell of one key hash."""
        return key_hash % self.modulus

    def refine(self) -> HashGrid:
        """The next finer grid: each cell splits into FANOUT residues."""
        return HashGrid(self.modulus * FANOUT)

    @property
    def atomic(self) -> bool:
        """True when every cell is one key hash (h < P): splitting cannot separate keys."""
        return self.modulus >= P

    def parent(self, cell: int, finer: Grid) -> int:
        """The cell of this grid that holds `finer`'s cell."""
        assert isinstance(finer, HashGrid)
        return cell % self.modulus

    def bucket_sql(self, dialect: Dialect, key_hash: str) -> str:
        """The SQL for a row's cell number."""
        return f"({key_hash} % {self.modulus})"

    def where_sql(self, key_hash: str, cells: Collection[int]) -> str:
        """A predicate for the rows of `cells`."""
        return f"({key_hash} % {self.modulus}) IN ({', '.join(map(str, sorted(cells)))})"


Grid = RangeGrid | HashGrid


def _runs(cells: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted cell numbers as (first, last) runs of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    for cell in sorted(cells):
        if runs and runs[-1][1] == cell - 1:
            runs[-1] = (runs[-1][0], cell)
        else:
            runs.append((cell, cell))
    return runs
