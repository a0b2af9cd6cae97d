"""Reconcile: time to find 100 drifted keys in N vs N rows, against pulling both sides.

Run with `.venv/bin/python bench/reconcile.py` (`--quick` for 100k rows, `--help`).

For each size, a `stock_<n>` table (sku BIGINT primary key, available INT) is loaded
into PostgreSQL (database `reconcile_bench`, created if missing, `generate_series`)
and MariaDB (`test.rcb_stock_<n>`, `INSERT ... SELECT` from the Sequence engine);
tables of the right size are reused. 100 random keys then differ on the MariaDB side.

Measured, each over a direct loopback connection and through a TCP proxy that limits
each database's link to 100 Mbit/s per direction (a separate process, so the relay
does not share the agent's event loop):

- the `reconcile` probe (real connectors, default settings) in each agent state of
  SCENARIOS: a fresh agent (no previous run) on the drifted tables, the next run of
  the same agent (drift seen last run), a fresh agent on unchanged tables, its next
  run (clean last run: the whole-table pass first), and drift appearing after that
  clean run (the whole-table pass, then the cells);
- the naive baseline, the fastest full pull available here: the C command-line
  clients, `psql` with `COPY ... TO STDOUT` and `mariadb --quick --batch`, both at
  once, each into a TSV file, then a FULL JOIN in DuckDB (psycopg's COPY is slower:
  Python sees one message per row).

Rows transferred count every row received (samples, checksums, pulled rows); bytes
are counted by the proxy in both directions, connection set-up included. `--costs`
adds what each side's scans cost alone and both at once, which says how much of a
run is the slower database and how much is the two sharing this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.probe_spec import RunContext
from agent.reconcile import Columns, Deadline, sql_side
from agent.reconcile.checksum import first_grid
from agent.reconcile.concurrency import all_of
from agent.reconcile.engine import ESTIMATE_CAP
from agent.reconcile.sides import Scheme, Summary
from agent.sources import MysqlSource, PostgresSource
from probes.reconcile import ReconcileSpec, run

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
DATABASE = "reconcile_bench"
DATABASE_B = "reconcile_bench_b"  # the right side of --pair pg-pg
MARIA = {"host": "127.0.0.1", "port": 3306, "user": "root", "database": "test"}
DRIFTED = 100
LINK_BITS = 100_000_000  # 100 Mbit/s


# --- data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """Where the right side lives: MariaDB (`pg-maria`) or a second PostgreSQL database (`pg-pg`)."""

    name: str

    @property
    def maria(self) -> bool:
        return self.name == "pg-maria"

    @property
    def right_port(self) -> int:
        return 3306 if self.maria else 5432

    def right_table(self, rows: int) -> str:
        return f"rcb_stock_{rows}" if self.maria else f"stock_{rows}"


def pg_connect(database: str = DATABASE) -> psycopg.Connection[tuple[Any, ...]]:
    """A writable connection to the bench database (or another one)."""
    return psycopg.connect(dbname=database, autocommit=True, **PG)  # type: ignore[arg-type]


def maria_connect() -> Any:
    """A writable MariaDB connection."""
    return pymysql.connect(**MARIA, autocommit=True)


def ensure_databases() -> None:
    """Create the PostgreSQL bench databases once."""
    with pg_connect("postgres") as conn:
        for name in (DATABASE, DATABASE_B):
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(f"CREATE DATABASE {name}")


def load_pg(database: str, rows: int) -> float | None:
    """`stock_<rows>` in `database` unless it holds `rows` rows already; the seconds it took."""
    table = f"stock_{rows}"
    with pg_connect(database) as pg:
        exists = pg.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        if exists and exists[0]:
            count = pg.execute(f"SELECT count(*) FROM {table}").fetchone()
            if count and count[0] == rows:
                return None
        started = time.perf_counter()
        pg.execute(f"DROP TABLE IF EXISTS {table}")
        pg.execute(f"CREATE TABLE {table} (sku BIGINT NOT NULL, available INT NOT NULL)")
        pg.execute(
            f"INSERT INTO {table} SELECT g, (g * 7919) % 1000 "
            f"FROM generate_series(1::bigint, {rows}) g"
        )
        pg.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (sku)")
        pg.execute(f"VACUUM ANALYZE {table}")
        return time.perf_counter() - started


def load_maria(rows: int) -> float | None:
    """`test.rcb_stock_<rows>` unless it holds `rows` rows already; the seconds it took."""
    table = f"rcb_stock_{rows}"
    maria = maria_connect()
    try:
        with maria.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = 'test' AND table_name = %s",
                (table,),
            )
            if cur.fetchone()[0]:
                cur.execute(f"SELECT count(*) FROM {table}")
                if cur.fetchone()[0] == rows:
                    return None
            started = time.perf_counter()
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(
                f"CREATE TABLE {table} (sku BIGINT NOT NULL PRIMARY KEY, available INT NOT NULL)"
            )
            # The Sequence engine's seq_1_to_N: no rows travel from the client.
            cur.execute(f"INSERT INTO {table} SELECT seq, (seq * 7919) % 1000 FROM seq_1_to_{rows}")
            cur.execute(f"ANALYZE TABLE {table}")
            cur.fetchall()
            return time.perf_counter() - started
    finally:
        maria.close()


def load(rows: int, pair: Pair) -> dict[str, float]:
    """Load both sides as needed; returns the load seconds of what was loaded."""
    took = {"postgres (left)": load_pg(DATABASE, rows)}
    if pair.maria:
        took["mariadb (right)"] = load_maria(rows)
    else:
        took["postgres (right)"] = load_pg(DATABASE_B, rows)
    return {side: seconds for side, seconds in took.items() if seconds is not None}


def drifted_keys(rows: int) -> list[int]:
    """The keys that differ: 100 at random, the same on every run."""
    return sorted(random.Random(rows).sample(range(1, rows + 1), DRIFTED))


def set_drift(rows: int, pair: Pair, on: bool) -> None:
    """Make the drifted keys differ on the right side (`on`) or agree again (idempotent)."""
    keys = ", ".join(map(str, drifted_keys(rows)))
    update = (
        f"UPDATE {pair.right_table(rows)} SET available = (sku * 7919) % 1000 + {int(on)} "
        f"WHERE sku IN ({keys})"
    )
    if not pair.maria:
        with pg_connect(DATABASE_B) as pg:
            pg.execute(update)
        return
    maria = maria_connect()
    try:
        with maria.cursor() as cur:
            cur.execute(update)
    finally:
        maria.close()


# --- a bandwidth-limited TCP proxy, in its own process ---------------------------------


class Link:
    """One direction of a link: chunks queue for it and each takes len/rate seconds.

    The sender sleeps only once the backlog exceeds MIN_SLEEP: epoll rounds timeouts
    up to a millisecond, so sleeping for every small message would add a millisecond
    per message, a latency that a 100 Mbit/s link does not have.
    """

    MIN_SLEEP = 0.002

    def __init__(self, bytes_per_second: float | None) -> None:
        self.rate = bytes_per_second
        self.free_at = 0.0

    async def carry(self, size: int) -> None:
        if self.rate is None:
            return
        now = time.monotonic()
        self.free_at = max(now, self.free_at) + size / self.rate
        if self.free_at - now > self.MIN_SLEEP:
            await asyncio.sleep(self.free_at - now)


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    link: Link,
    counter: Synchronized[int],
) -> None:
    try:
        while chunk := await reader.read(65536):
            await link.carry(len(chunk))
            with counter.get_lock():
                counter.value += len(chunk)
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _proxy(
    targets: list[int], rate: float | None, counter: Synchronized[int], ports: Any
) -> None:
    servers = []
    for target in targets:
        up, down = Link(rate), Link(rate)  # one link per database, shared by its connections

        async def accept(
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            target: int = target,
            up: Link = up,
            down: Link = down,
        ) -> None:
            try:
                server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
            except OSError:
                writer.close()
                return
            await asyncio.gather(
                _relay(reader, server_writer, up, counter),
                _relay(server_reader, writer, down, counter),
            )

        servers.append(await asyncio.start_server(accept, "127.0.0.1", 0))
    ports.put([server.sockets[0].getsockname()[1] for server in servers])
    await asyncio.Event().wait()  # until the parent terminates this process


def _proxy_main(
    targets: list[int], rate: float | None, counter: Synchronized[int], ports: Any
) -> None:
    asyncio.run(_proxy(targets, rate, counter, ports))


@contextlib.contextmanager
def proxy(
    targets: list[int], bits_per_second: int | None
) -> Iterator[tuple[list[int], Callable[[], int]]]:
    """Proxy ports for `targets` (loopback ports) and a function returning bytes relayed so far."""
    context = multiprocessing.get_context("spawn")
    counter: Synchronized[int] = context.Value("q", 0)
    ports = context.Queue()
    rate = None if bits_per_second is None else bits_per_second / 8
    process = context.Process(target=_proxy_main, args=(targets, rate, counter, ports), daemon=True)
    process.start()
    try:
        yield ports.get(timeout=30), lambda: int(counter.value)
    finally:
        process.terminate()
        process.join(5)


# --- the two methods -----------------------------------------------------------------


@dataclass
class Run:
    """One measured run (or the median of several, with the fastest in `best`)."""

    seconds: float
    rows: int
    found: int
    bytes: int | None = None
    best: float | None = None


def probe_spec(rows: int, pair: Pair) -> ReconcileSpec:
    """The probe as a user would write it: defaults apart from a long timeout."""
    right = "maria" if pair.maria else "pg_b"
    return ReconcileSpec.model_validate(
        {
            "name": f"stock-{rows}",
            "kind": "reconcile",
            "every": "1h",
            "timeout": "30m",
            "left": {"source": "pg", "query": f"SELECT sku, available FROM stock_{rows}"},
            "right": {
                "source": right,
                "query": f"SELECT sku, available FROM {pair.right_table(rows)}",
            },
            "key": ["sku"],
            "compare": ["available"],
            "max_evidence": DRIFTED,
        }
    )


def new_context(ports: tuple[int, int]) -> RunContext:
    """A fresh agent context: nothing pooled, no state from earlier runs."""
    left, right = ports
    return RunContext(
        sources={
            "pg": PostgresSource(kind="postgres", port=left, database=DATABASE, user="postgres"),
            "pg_b": PostgresSource(
                kind="postgres", port=right, database=DATABASE_B, user="postgres"
            ),
            "maria": MysqlSource(kind="mysql", port=right, database="test", user="root"),
        }
    )


async def _timed(spec: ReconcileSpec, ctx: RunContext, counted: Callable[[], int] | None) -> Run:
    before = counted() if counted else 0
    started = time.perf_counter()
    result = await run(spec, ctx)
    seconds = time.perf_counter() - started
    if result.error:
        raise SystemExit(f"probe failed: {result.error}")
    values = result.values
    return Run(seconds, values["rows_transferred"], values["mismatched"], _delta(counted, before))


SCENARIOS = {
    "first": "probe, fresh agent, drift",
    "again": "probe, drift seen last run",
    "unchanged": "probe, fresh agent, unchanged",
    "unchanged_again": "probe, clean last run, unchanged",
    "after_clean": "probe, clean last run, drift",
}


async def probe_runs(
    rows: int, pair: Pair, ports: tuple[int, int], counted: Callable[[], int] | None
) -> dict[str, Run]:
    """Every scenario of SCENARIOS, each on the agent state it names."""
    spec = probe_spec(rows, pair)
    measured: dict[str, Run] = {}
    ctx = new_context(ports)
    try:
        measured["first"] = await _timed(spec, ctx, counted)
        measured["again"] = await _timed(spec, ctx, counted)
    finally:
        await ctx.aclose()
    set_drift(rows, pair, on=False)
    ctx = new_context(ports)
    try:
        measured["unchanged"] = await _timed(spec, ctx, counted)
        measured["unchanged_again"] = await _timed(spec, ctx, counted)
        set_drift(rows, pair, on=True)
        measured["after_clean"] = await _timed(spec, ctx, counted)
    finally:
        await ctx.aclose()
        set_drift(rows, pair, on=True)
    return measured


async def side_costs(
    rows: int, pair: Pair, repeats: int
) -> list[tuple[str, tuple[float, float, float], float]]:
    """What one side's scans cost alone and with the other side's at once (loopback).

    The real sides and connectors, the grid the probe uses at this size: the
    whole-table pass (in its key-range parts) and the first level of cells (likewise).
    """
    spec = probe_spec(rows, pair)
    ctx = new_context((5432, pair.right_port))
    deadline = Deadline.after(3600)
    columns = Columns(tuple(spec.key), tuple(spec.compare))
    try:
        made = [
            sql_side(label, s.source, ctx.connector(s.source), s.query or "", columns, deadline, 1)  # type: ignore[arg-type]
            for label, s in (("left", spec.left), ("right", spec.right))
        ]
        scheme = Scheme(("int",), ("int",))
        bounds = [await side.bounds() for side in made]
        lo = min(b[0] for b in bounds if b[0] is not None)
        hi = max(b[1] for b in bounds if b[1] is not None)
        summary = Summary(min(hi - lo + 1, ESTIMATE_CAP), 0, lo, hi)
        grid = first_grid(scheme, summary, summary).grid

        def jobs(which: list[int], kind: str) -> list[Any]:
            if kind == "whole-table pass":
                return [made[i].summary(scheme, bounds=bounds[i]) for i in which]
            return [made[i].cells(scheme, grid, None) for i in which]

        out = []
        for kind in ("whole-table pass", "first level of cells"):
            for label, which in (
                ("left alone", [0]),
                ("right alone", [1]),
                ("both at once", [0, 1]),
            ):
                runs = []
                for _ in range(repeats):
                    cpu = server_cpu()
                    started = time.perf_counter()
                    await all_of(*jobs(which, kind))
                    seconds = time.perf_counter() - started
                    pg_cpu, maria_cpu = (b - a for a, b in zip(cpu, server_cpu(), strict=True))
                    runs.append((seconds, pg_cpu, maria_cpu))
                runs.sort()
                out.append((f"{kind}, {label}", runs[len(runs) // 2], runs[0][0]))
        return out
    finally:
        await ctx.aclose()


def server_cpu() -> tuple[float, float]:
    """CPU seconds used so far by PostgreSQL (every process) and by the MariaDB server.

    Other work on the servers counts too; during the bench that is the other
    engineers' test runs, which use small tables.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    totals = {"postgres": 0.0, "mariadbd": 0.0}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            name = (proc / "comm").read_text().strip()
            if name not in totals:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime + stime, and cutime + cstime: the postmaster's exited children, such as
        # the parallel workers of a whole-table pass.
        totals[name] += sum(int(field) for field in fields[11:15]) / ticks
    return totals["postgres"], totals["mariadbd"]


def naive(
    rows: int, pair: Pair, ports: tuple[int, int], counted: Callable[[], int] | None, folder: Path
) -> Run:
    """Pull both tables whole at once with the C clients, then a FULL JOIN in DuckDB."""
    before = counted() if counted else 0
    left_file, right_file = folder / "left.tsv", folder / "right.tsv"

    def psql(port: int, database: str) -> list[str]:
        return [
            "psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database, "-X",
            "-q", "-c", f"COPY (SELECT sku, available FROM stock_{rows}) TO STDOUT",
        ]  # fmt: skip

    mariadb = [
        shutil.which("mariadb") or "mysql", "--protocol=TCP", "-h", "127.0.0.1", "-P",
        str(ports[1]), "-u", "root", "--quick", "--batch", "--skip-column-names", "test",
        "-e", f"SELECT sku, available FROM {pair.right_table(rows)}",
    ]  # fmt: skip
    started = time.perf_counter()
    with left_file.open("wb") as left_out, right_file.open("wb") as right_out:
        pulls = [
            subprocess.Popen(psql(ports[0], DATABASE), stdout=left_out),
            subprocess.Popen(
                mariadb if pair.maria else psql(ports[1], DATABASE_B), stdout=right_out
            ),
        ]
        if any(pull.wait() != 0 for pull in pulls):
            raise SystemExit("a naive pull failed")
    with duckdb.connect() as db:
        for name, path in (("l", left_file), ("r", right_file)):
            db.execute(
                f"CREATE TABLE {name} AS SELECT * FROM read_csv('{path}', delim='\\t', "
                "header=false, columns={'sku': 'BIGINT', 'available': 'INTEGER'})"
            )
        found = db.execute(
            "SELECT count(*) FROM l FULL JOIN r USING (sku) "
            "WHERE l.available IS DISTINCT FROM r.available"
        ).fetchone()
    seconds = time.perf_counter() - started
    assert found is not None
    return Run(seconds, 2 * rows, int(found[0]), _delta(counted, before))


def _delta(counted: Callable[[], int] | None, before: int) -> int | None:
    return None if counted is None else counted() - before


# --- orchestration and report -----------------------------------------------------------


def measure(rows: int, pair: Pair, repeats: int, folder: Path) -> list[tuple[str, str, Run]]:
    """Every method over both links, `repeats` times each (the median run is kept)."""
    set_drift(rows, pair, on=True)
    out: list[tuple[str, str, Run]] = []
    targets = [5432, pair.right_port]
    for link, limit in (("loopback", None), ("100 Mbit/s", LINK_BITS)):
        proxied = proxy(targets, limit) if limit else contextlib.nullcontext((targets, None))
        with proxied as (ports, counted):
            at = (ports[0], ports[1])
            samples = [asyncio.run(probe_runs(rows, pair, at, counted)) for _ in range(repeats)]
            for label, method in SCENARIOS.items():
                out.append((method, link, _median([s[label] for s in samples])))
            pulls = [naive(rows, pair, at, counted, folder) for _ in range(repeats)]
            out.append(("naive pull + DuckDB join", link, _median(pulls)))
    return out


def _median(runs: list[Run]) -> Run:
    ordered = sorted(runs, key=lambda r: r.seconds)
    middle = ordered[len(ordered) // 2]
    middle.best = ordered[0].seconds
    return middle


def machine() -> str:
    """One line about the machine and the servers."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    with pg_connect() as pg:
        pg_version = pg.execute("SHOW server_version").fetchone()
    maria = maria_connect()
    with maria.cursor() as cur:
        cur.execute("SELECT VERSION(), @@innodb_buffer_pool_size")
        maria_version, pool = cur.fetchone()
    maria.close()
    return (
        f"nproc {multiprocessing.cpu_count()}, {cpu}, {int(memory) / 2**20:.1f} GiB RAM, Linux {platform.release()}; "
        f"Python {platform.python_version()}, PostgreSQL {pg_version[0] if pg_version else '?'}, "
        f"MariaDB {maria_version} (innodb_buffer_pool_size {int(pool) // 2**20} MiB), "
        f"DuckDB {duckdb.__version__}, psycopg {psycopg.__version__}"
    )


def report(rows: int, results: list[tuple[str, str, Run]]) -> str:
    """A Markdown table of one size's results."""
    lines = [
        f"| {rows:,} vs {rows:,} | link | median s | fastest s | rows transferred | % of {2 * rows:,} | bytes | found |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method, link, r in results:
        size = "-" if r.bytes is None else f"{r.bytes / 1e6:,.2f} MB"
        lines.append(
            f"| {method} | {link} | {r.seconds:.2f} | {r.best or r.seconds:.2f} | {r.rows:,} | "
            f"{100 * r.rows / (2 * rows):.2f} % | {size} | {r.found} |"
        )
    return "\n".join(lines)


def _load() -> str:
    """The 1-minute load average: other work on the machine skews every number."""
    return Path("/proc/loadavg").read_text().split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100,000 rows per side")
    parser.add_argument(
        "--sizes", default="1000000,10000000", help="rows per side, comma-separated"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median kept)")
    parser.add_argument(
        "--pair",
        choices=["pg-maria", "pg-pg"],
        default="pg-maria",
        help="the right side in MariaDB, or in a second PostgreSQL database",
    )
    parser.add_argument(
        "--costs",
        action="store_true",
        help="also time each side's scans alone and both at once (loopback)",
    )
    parser.add_argument("--costs-only", action="store_true", help="only the --costs table")
    args = parser.parse_args()
    sizes = [100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    pair = Pair(args.pair)
    ensure_databases()
    print(f"Machine: {machine()}\nPair: {pair.name}\n")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            took = load(rows, pair)
            if took:
                print(
                    "Loaded: "
                    + ", ".join(f"{side} {seconds:.1f} s" for side, seconds in took.items())
                )
            if not args.costs_only:
                load_before = _load()
                results = measure(rows, pair, args.repeats, Path(tmp))
                print(f"Load average (1 min) before / after: {load_before} / {_load()}")
                print(report(rows, results) + "\n", flush=True)
            if args.costs or args.costs_only:
                print(f"Load average (1 min) before: {_load()}")
                set_drift(rows, pair, on=True)
                costs = asyncio.run(side_costs(rows, pair, args.repeats))
                print(
                    f"| {rows:,}: scans per side (loopback) | median s | fastest s "
                    "| PostgreSQL CPU s | MariaDB CPU s |"
                )
                print("|---|---:|---:|---:|---:|")
                for what, (median, pg_cpu, maria_cpu), fastest in costs:
                    print(
                        f"| {what} | {median:.2f} | {fastest:.2f} | {pg_cpu:.2f} | {maria_cpu:.2f} |"
                    )
                print(f"Load average (1 min) after: {_load()}\n", flush=True)


if __name__ == "__main__":
    main()
