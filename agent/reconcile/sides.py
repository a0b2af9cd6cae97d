"""One side of a comparison: the questions the engine asks, answered by a database or in Python.

`SqlSide` (PostgreSQL, MariaDB/MySQL, DuckDB) answers them with SQL that wraps the
user's query as a subquery, `SELECT ... FROM (<query>) q WHERE ...`, so any query
works and a key filter still reaches the table's index (both PostgreSQL and MariaDB
merge such a derived table into the outer query). `LocalSide` holds every row in
memory and answers the same questions in Python; it serves the sources that cannot
hash in SQL: SQLite (no md5) and Redis hashes (no SQL).

Every side counts the rows it receives, so a run can report what it transferred.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.connectors import Rows, SourceError, SqlConnector
from agent.reconcile.compare import ReconcileError
from agent.reconcile.concurrency import all_of
from agent.reconcile.grids import Grid, RangeGrid
from agent.reconcile.hashing import Dialect, HashKind, fold, fold_sql, quote

SAMPLE_ROWS = 100  # rows read to learn each column's kind of value
MAX_LISTED = 5_000  # beyond this many cells a filter is done by the client, not in SQL
# On MariaDB/MySQL, which runs a query on one thread, a first range level of at least
# SPLIT_FROM cells (~250k rows) and a whole-table pass over at least SPLIT_KEYS key
# values are read as PARTS concurrent key-range queries (an InnoDB primary key range
# costs per row what a full scan does). Two keeps the probe's share of the database
# modest. PostgreSQL is not split: two key-range halves cost it twice the CPU of one
# sequential scan for no shorter time (one half becomes an index scan, the other,
# which must also hold the NULL keys, a filtered scan of the whole table), and it
# parallelizes a whole-table pass itself.
PARTS = 2
SPLIT_FROM = 512
SPLIT_KEYS = 250_000


@dataclass(frozen=True)
class Scheme:
    """How rows hash: one agreed kind per key column and per compared column."""

    key_kinds: tuple[HashKind, ...]
    value_kinds: tuple[HashKind, ...]

    @property
    def integer_key(self) -> bool:
        """True when the key is one integer column: range cells are possible."""
        return self.key_kinds == ("int",)


@dataclass(frozen=True)
class Summary:
    """A whole side at once: row count, hash sum, and the key range for an integer key."""

    count: int
    total: int
    lo: int | None = None
    hi: int | None = None


@dataclass(frozen=True)
class Check:
    """One cell's checksum."""

    count: int
    total: int


@dataclass
class Deadline:
    """The time left for a run, handed to every query as its timeout."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """A deadline `seconds` from now."""
        return cls(time.monotonic() + seconds)

    def left(self) -> float:
        """Seconds until the deadline (at least 1 ms: a query then times out at once)."""
        return max(0.001, self.at - time.monotonic())


class Side(Protocol):
    """What the engine asks of a side."""

    label: str  # "left" or "right"
    local: bool  # True when every row is already in memory
    rows_transferred: int
    queries: int

    async def sample(self) -> list[tuple[Any, ...]]:
        """Up to SAMPLE_ROWS rows of (key..., compared...) values."""
        ...

    async def all_rows(self, max_rows: int) -> list[tuple[Any, ...]] | None:
        """Every row, or None when there are more than `max_rows`."""
        ...

    async def summary(
        self, scheme: Scheme, *, bounds: tuple[int | None, int | None] | None
    ) -> Summary:
        """Count and hash sum of every row; `bounds`: the integer key's min and max, if any."""
        ...

    async def bounds(self) -> tuple[int | None, int | None]:
        """The smallest and largest value of a single integer key."""
        ...

    async def cells(
        self, scheme: Scheme, grid: Grid, within: tuple[Grid, Collection[int]] | None
    ) -> dict[int, Check]:
        """Checksums per cell of `grid`, for the rows inside `within` (a coarser grid's cells)."""
        ...

    async def pull(
        self, scheme: Scheme, grid: Grid, cells: Collection[int], max_rows: int
    ) -> list[tuple[Any, ...]]:
        """The (key..., compared...) rows of `cells`; ReconcileError above `max_rows`."""
        ...


@dataclass
class Columns:
    """The columns a comparison reads: key columns first, then compared ones."""

    key: tuple[str, ...]
    compare: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        """Key and compared columns, in row order."""
        return self.key + self.compare

    def project(self, label: str, rows: Rows) -> list[tuple[Any, ...]]:
        """The needed columns of `rows`, in key-then-compared order."""
        if not rows.rows:
            # Nothing to project; and some drivers (psycopg's stream) name no columns
            # for an empty result, so there is nothing to check them against either.
            return []
        where = self.positions(label, rows.columns)
        return [tuple(row[i] for i in where) for row in rows.rows]

    def positions(self, label: str, found: Sequence[str]) -> list[int]:
        """Where each needed column is in a query's columns; ReconcileError if one is missing."""
        missing = [name for name in self.all if name not in found]
        if missing:
            raise ReconcileError(
                f"the {label} query returns no column {', '.join(map(repr, missing))} "
                f"(it returns {', '.join(found) or 'no columns'})"
            )
        return [list(found).index(name) for name in self.all]


class SqlSide:
    """A side answered by SQL inside PostgreSQL, MariaDB/MySQL or DuckDB."""

    local = False

    def __init__(
        self,
        label: str,
        source: str,
        connector: SqlConnector,
        query: str,
        columns: Columns,
        deadline: Deadline,
    ) -> None:
        if connector.dialect == "sqlite":
            raise ValueError("SQLite sides are local sides (SQLite has no md5)")
        self.label = label
        self.source = source
        self.dialect: Dialect = connector.dialect
        self._connector = connector
        # A trailing `;` would end the statement inside our wrapper.
        self._query = query.strip().rstrip(";").rstrip()
        self._columns = columns
        self._deadline = deadline
        self.rows_transferred = 0
        self.queries = 0
        self._splits = self.dialect == "mysql"  # see PARTS

    async def sample(self) -> list[tuple[Any, ...]]:
        """See `Side.sample`; also checks that the query returns every needed column."""
        rows = await self._fetch(f"SELECT * FROM {self._from()} LIMIT {SAMPLE_ROWS}", SAMPLE_ROWS)
        return self._columns.project(self.label, rows)

    async def all_rows(self, max_rows: int) -> list[tuple[Any, ...]] | None:
        """See `Side.all_rows`."""
        rows = await self._fetch(f"SELECT {self._select()} FROM {self._from()}", max_rows)
        return None if rows.truncated else rows.rows

    async def summary(
        self, scheme: Scheme, *, bounds: tuple[int | None, int | None] | None
    ) -> Summary:
        """See `Side.summary`: one scan, `count(*)` and `sum(hash)` computed in the database.

        Over a wide integer key range the scan is cut into PARTS concurrent key ranges.
        """
        lo, hi = bounds or (None, None)
        wheres = [""]
        if self._splits and lo is not None and hi is not None and hi - lo + 1 >= SPLIT_KEYS:
            wheres = self._split([lo + (hi - lo + 1) * i // PARTS for i in range(1, PARTS)])
        parts = await all_of(*(self._summary(scheme, where) for where in wheres))
        return Summary(sum(c for c, _ in parts), sum(t for _, t in parts), lo, hi)

    async def _summary(self, scheme: Scheme, where: str) -> tuple[int, int]:
        sql = (
            f"SELECT count(*), sum(h) FROM (SELECT {self._row_hash(scheme)} AS h "
            f"FROM {self._from()}{f' WHERE {where}' if where else ''}) t"
        )
        (row,) = (await self._fetch(sql, 1)).rows
        return int(row[0]), _int(row[1]) or 0

    async def bounds(self) -> tuple[int | None, int | None]:
        """See `Side.bounds` (PostgreSQL and MariaDB answer from the key's index)."""
        (row,) = (
            await self._fetch(
                f"SELECT min({self._key()}), max({self._key()}) FROM {self._from()}", 1
            )
        ).rows
        return _int(row[0]), _int(row[1])

    async def cells(
        self, scheme: Scheme, grid: Grid, within: tuple[Grid, Collection[int]] | None
    ) -> dict[int, Check]:
        """See `Side.cells`: `count(*)` and `sum(hash)` per cell, grouped in the database."""
        if within is None and isinstance(grid, RangeGrid):
            last = grid.last_cell
            if self._splits and last is not None and last + 1 >= SPLIT_FROM:
                parts = await all_of(
                    *(self._grouped(scheme, grid, where) for where in self._parts(grid, last))
                )
                return {cell: check for part in parts for cell, check in part.items()}
        if within is None:
            return await self._grouped(scheme, grid, "")
        coarse, keep = within
        if len(keep) <= MAX_LISTED:
            where = coarse.where_sql(self._cell_input(scheme, coarse), keep)
            return await self._grouped(scheme, grid, where)
        found = await self._grouped(scheme, grid, "")
        return {c: check for c, check in found.items() if coarse.parent(c, grid) in keep}

    def _parts(self, grid: RangeGrid, last: int) -> list[str]:
        """PARTS key-range predicates covering every key, cut at cell boundaries."""
        return self._split(
            [grid.lo + (last + 1) * i // PARTS * grid.width for i in range(1, PARTS)]
        )

    def _split(self, edges: list[int]) -> list[str]:
        """Key-range predicates cut at `edges` (each edge starts a part) covering every row.

        The outer parts are open-ended, and the first one also holds NULL keys, so that
        a row with a NULL key is still counted (and, in cells, reported).
        """
        key = self._key()
        lows: list[int | None] = [None, *edges]
        highs: list[int | None] = [*(edge - 1 for edge in edges), None]
        wheres = []
        for low, high in zip(lows, highs, strict=True):
            if low is None:
                wheres.append(f"({key} <= {high} OR {key} IS NULL)")
            elif high is None:
                wheres.append(f"{key} >= {low}")
            else:
                wheres.append(f"{key} >= {low} AND {key} <= {high}")
        return wheres

    async def _grouped(self, scheme: Scheme, grid: Grid, where: str) -> dict[int, Check]:
        """One grouped query: `count(*)` and `sum(hash)` per cell of the rows matching `where`."""
        inner = (
            f"SELECT {grid.bucket_sql(self.dialect, self._cell_input(scheme, grid))} AS b, "
            f"{self._row_hash(scheme)} AS h FROM {self._from()}"
            + (f" WHERE {where}" if where else "")
        )
        if self.dialect == "postgres":
            # Seen from outside `OFFSET 0`, `b` has no statistics, so PostgreSQL plans a
            # hash aggregate for ~200 groups; without it, it takes the key's statistics
            # (one group per row) and sorts every row, spilling to disk.
            inner += " OFFSET 0"
        rows = await self._fetch(f"SELECT b, count(*), sum(h) FROM ({inner}) t GROUP BY b", None)
        found: dict[int, Check] = {}
        for bucket, count, total in rows.rows:
            if bucket is None:  # only a NULL integer key has no cell
                raise ReconcileError(f"the {self.label} side has a row with a NULL key")
            found[int(bucket)] = Check(int(count), int(total))
        return found

    async def pull(
        self, scheme: Scheme, grid: Grid, cells: Collection[int], max_rows: int
    ) -> list[tuple[Any, ...]]:
        """See `Side.pull`."""
        where = grid.where_sql(self._cell_input(scheme, grid), cells)
        rows = await self._fetch(
            f"SELECT {self._select()} FROM {self._from()} WHERE {where}", max_rows
        )
        if rows.truncated:
            raise ReconcileError(f"the {self.label} side has more than {max_rows} rows to compare")
        return rows.rows

    # --- SQL pieces ---

    def _from(self) -> str:
        # MariaDB refuses a derived table without an alias; the newline ends a `--`
        # comment on the query's last line.
        return f"({self._query}\n) q"

    def _select(self) -> str:
        return ", ".join(quote(self.dialect, c) for c in self._columns.all)

    def _key(self) -> str:
        return quote(self.dialect, self._columns.key[0])

    def _row_hash(self, scheme: Scheme) -> str:
        kinds = scheme.key_kinds + scheme.value_kinds
        return fold_sql(
            self.dialect,
            [(quote(self.dialect, c), k) for c, k in zip(self._columns.all, kinds, strict=True)],
        )

    def _cell_input(self, scheme: Scheme, grid: Grid) -> str:
        """What a grid's cell is computed from: the key itself, or the key's hash."""
        if isinstance(grid, RangeGrid):
            return self._key()
        return fold_sql(
            self.dialect,
            [
                (quote(self.dialect, c), k)
                for c, k in zip(self._columns.key, scheme.key_kinds, strict=True)
            ],
        )

    async def _fetch(self, sql: str, max_rows: int | None) -> Rows:
        self.queries += 1
        try:
            rows = await self._connector.fetch(
                sql,
                max_rows=max_rows if max_rows is not None else 10_000_000,
                timeout=self._deadline.left(),
            )
        except SourceError as exc:
            raise ReconcileError(f"{self.label} ({self.source}): {exc}") from None
        self.rows_transferred += len(rows.rows)
        return rows


Loader = Callable[[int], Awaitable[tuple[list[tuple[Any, ...]], bool]]]


@dataclass
class _Hashed:
    """A local row with its hashes, computed once per run."""

    row: tuple[Any, ...]
    key_hash: int
    row_hash: int


@dataclass
class LocalSide:
    """A side whose rows are all read into memory (bounded by max_rows) and hashed in Python.

    `load(max_rows)` returns the (key..., compared...) rows and whether there were more.
    """

    label: str
    source: str
    load: Loader
    max_rows: int
    key_width: int
    local: bool = True
    rows_transferred: int = 0
    queries: int = 0
    _rows: list[tuple[Any, ...]] | None = None
    _hashed: list[_Hashed] | None = None
    _scheme: Scheme | None = field(default=None, repr=False)

    async def _all(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            self.queries += 1
            try:
                rows, more = await self.load(self.max_rows)
            except SourceError as exc:
                raise ReconcileError(f"{self.label} ({self.source}): {exc}") from None
            if more:
                raise ReconcileError(
                    f"the {self.label} side ({self.source}) has more than {self.max_rows} rows "
                    "(max_rows); it is read whole because it cannot checksum in SQL"
                )
            self.rows_transferred += len(rows)
            self._rows = rows
        return self._rows

    def _hashes(self, scheme: Scheme) -> list[_Hashed]:
        if self._hashed is None or self._scheme != scheme:
            assert self._rows is not None
            kinds = scheme.key_kinds + scheme.value_kinds
            width = self.key_width
            self._hashed = [
                _Hashed(row, fold(row[:width], scheme.key_kinds), fold(row, kinds))
                for row in self._rows
            ]
            self._scheme = scheme
        return self._hashed

    async def sample(self) -> list[tuple[Any, ...]]:
        """See `Side.sample` (a local side reads everything on the first question)."""
        return await self._all()

    async def all_rows(self, max_rows: int) -> list[tuple[Any, ...]] | None:
        """See `Side.all_rows`."""
        rows = await self._all()
        return None if len(rows) > max_rows else rows

    async def summary(
        self, scheme: Scheme, *, bounds: tuple[int | None, int | None] | None
    ) -> Summary:
        """See `Side.summary`."""
        await self._all()
        hashed = self._hashes(scheme)
        lo, hi = bounds or (None, None)
        return Summary(len(hashed), sum(h.row_hash for h in hashed), lo, hi)

    async def bounds(self) -> tuple[int | None, int | None]:
        """See `Side.bounds`."""
        keys = [int(row[0]) for row in await self._all()]
        return (min(keys), max(keys)) if keys else (None, None)

    async def cells(
        self, scheme: Scheme, grid: Grid, within: tuple[Grid, Collection[int]] | None
    ) -> dict[int, Check]:
        """See `Side.cells`."""
        counts: dict[int, list[int]] = {}
        for item in self._hashes(scheme):
            if within is not None and _cell(within[0], item) not in within[1]:
                continue
            slot = counts.setdefault(_cell(grid, item), [0, 0])
            slot[0] += 1
            slot[1] += item.row_hash
        return {cell: Check(n, total) for cell, (n, total) in counts.items()}

    async def pull(
        self, scheme: Scheme, grid: Grid, cells: Collection[int], max_rows: int
    ) -> list[tuple[Any, ...]]:
        """See `Side.pull` (nothing is transferred: the rows are in memory)."""
        wanted = set(cells)
        return [h.row for h in self._hashes(scheme) if _cell(grid, h) in wanted]


def _cell(grid: Grid, item: _Hashed) -> int:
    return grid.cell(int(item.row[0])) if isinstance(grid, RangeGrid) else grid.cell(item.key_hash)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
