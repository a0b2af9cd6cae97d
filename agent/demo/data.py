"""The demo shop's data: two SQLite files and every operation that changes them.

`shop.db` holds products, inventory, orders and payments; `warehouse.db` holds the
physical stock. The invariant a reconcile probe checks is

    shop.inventory.available == warehouse.stock.on_hand - warehouse.stock.reserved

Every operation here keeps it: an order reserves stock on both sides, a captured
payment ships it (on_hand and reserved both drop), a failed one releases it. Only the
fault helpers (`drift_stock`) break it on purpose, and `resync_stock` restores it.

Both files are opened through one connection (`warehouse.db` attached as `wh`) so an
order touches both in one transaction. Journal mode is WAL so probes and the fault
injector, in other processes, read while the shop writes. Timestamps are UTC text in
SQLite's own format (`2026-05-01 12:00:00`) so that SQL such as
`created_at < datetime('now', '-15 minutes')` compares correctly.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

SHOP_DB = "shop.db"
WAREHOUSE_DB = "warehouse.db"
SKU_COUNT = 50
STUCK_AFTER = timedelta(minutes=15)
ORDER_STATUSES = ("pending", "paid", "cancelled")
PAYMENT_STATUSES = ("pending", "captured", "failed")

_SHOP_SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS inventory (
    sku TEXT PRIMARY KEY,
    available INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'cancelled')),
    amount_cents INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS payments (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'captured', 'failed')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_status ON orders (status);
CREATE INDEX IF NOT EXISTS payments_status ON payments (status, created_at);
"""

_WAREHOUSE_SCHEMA = """
CREATE TABLE IF NOT EXISTS wh.stock (
    sku TEXT PRIMARY KEY,
    on_hand INTEGER NOT NULL,
    reserved INTEGER NOT NULL
);
"""

_ADJECTIVES = (
    "Classic",
    "Organic",
    "Compact",
    "Deluxe",
    "Rugged",
    "Vintage",
    "Smart",
    "Eco",
    "Pro",
    "Mini",
)
_NOUNS = (
    "Mug",
    "Backpack",
    "Lamp",
    "Notebook",
    "Kettle",
    "Headphones",
    "Scarf",
    "Bottle",
    "Chair",
    "Tent",
)


@dataclass(frozen=True)
class PlacedOrder:
    """An order just placed, with the pending payment created for it."""

    order_id: int
    payment_id: int
    sku: str
    qty: int
    amount_cents: int
    created_at: str


@dataclass(frozen=True)
class Backlog:
    """Counts of work the shop has not finished, as `backlog.py` prints them."""

    pending_orders: int
    pending_payments: int
    stuck_payments: int
    stuck_amount_cents: int
    oldest_pending_s: float


def sku_name(index: int) -> str:
    """The SKU code for a 1-based index: `SKU-0001`."""
    return f"SKU-{index:04d}"


def timestamp(at: datetime | None = None) -> str:
    """UTC time as SQLite text (`YYYY-MM-DD HH:MM:SS`), comparable with `datetime('now')`."""
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def connect(data_dir: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Open `shop.db` with `warehouse.db` attached as `wh`, in autocommit mode.

    Writers use `transaction()`; a busy timeout lets the shop, the fault injector and
    probes share the files without "database is locked" errors.
    """
    shop, warehouse = data_dir / SHOP_DB, data_dir / WAREHOUSE_DB
    if read_only:
        for path in (shop, warehouse):
            if not path.exists():
                raise FileNotFoundError(f"no {path.name} in {data_dir} (has the demo shop run?)")
        conn = sqlite3.connect(f"{shop.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        conn.execute("ATTACH DATABASE ? AS wh", (f"{warehouse.resolve().as_uri()}?mode=ro",))
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(shop, isolation_level=None)
        conn.execute("ATTACH DATABASE ? AS wh", (str(warehouse),))
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction over both files; IMMEDIATE so two writers never deadlock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def seed(data_dir: Path, *, skus: int = SKU_COUNT, rng: random.Random | None = None) -> bool:
    """Create both databases and fill them with a consistent catalogue, unless present.

    Returns True when it seeded, False when the data was already there (a restart
    after a crash keeps its orders, and any drift, as a real shop would).
    """
    rng = rng or random.Random(7)  # a fixed seed: the same catalogue on every machine
    with closing(connect(data_dir)) as conn:
        for schema in ("main", "wh"):
            conn.execute(f"PRAGMA {schema}.journal_mode = WAL")
        conn.executescript(_SHOP_SCHEMA + _WAREHOUSE_SCHEMA)
        with transaction(conn):
            if conn.execute("SELECT count(*) FROM products").fetchone()[0]:
                return False
            for i in range(1, skus + 1):
                sku = sku_name(i)
                name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
                on_hand = rng.randrange(200, 600)
                conn.execute(
                    "INSERT INTO products VALUES (?, ?, ?)", (sku, name, rng.randrange(499, 19_999))
                )
                conn.execute("INSERT INTO inventory VALUES (?, ?)", (sku, on_hand))
                conn.execute("INSERT OR REPLACE INTO wh.stock VALUES (?, ?, 0)", (sku, on_hand))
    return True


def place_order(conn: sqlite3.Connection, sku: str, qty: int) -> PlacedOrder | None:
    """Create a pending order and its pending payment, reserving stock on both sides.

    Returns None when the SKU is unknown or not enough is available.
    Raises ValueError for a quantity below 1.
    """
    if qty < 1:
        raise ValueError("qty must be at least 1")
    now = timestamp()
    with transaction(conn):
        row = conn.execute(
            "SELECT p.price_cents, i.available FROM products p JOIN inventory i USING (sku) "
            "WHERE sku = ?",
            (sku,),
        ).fetchone()
        if row is None or row[1] < qty:
            return None
        amount = row[0] * qty
        conn.execute("UPDATE inventory SET available = available - ? WHERE sku = ?", (qty, sku))
        conn.execute("UPDATE wh.stock SET reserved = reserved + ? WHERE sku = ?", (qty, sku))
        order_id = _insert_order(conn, sku, qty, amount, now)
        payment_id = _insert_payment(conn, order_id, amount, now)
    return PlacedOrder(order_id, payment_id, sku, qty, amount, now)


def settle_payment(conn: sqlite3.Connection, payment_id: int, *, captured: bool = True) -> bool:
    """Capture (or fail) a pending payment and settle its order and stock.

    Captured: the order is paid and the reserved units ship (on_hand and reserved drop).
    Failed: the order is cancelled and the reservation is released.
    Returns False when the payment is no longer pending (someone settled it already).
    """
    now = timestamp()
    with transaction(conn):
        row = conn.execute(
            "SELECT o.id, o.sku, o.qty FROM payments p JOIN orders o ON o.id = p.order_id "
            "WHERE p.id = ? AND p.status = 'pending'",
            (payment_id,),
        ).fetchone()
        if row is None:
            return False
        order_id, sku, qty = row
        status, order_status = ("captured", "paid") if captured else ("failed", "cancelled")
        conn.execute(
            "UPDATE payments SET status = ?, updated_at = ? WHERE id = ?", (status, now, payment_id)
        )
        conn.execute("UPDATE orders SET status = ? WHERE id = ?", (order_status, order_id))
        if captured:
            conn.execute(
                "UPDATE wh.stock SET on_hand = on_hand - ?, reserved = reserved - ? WHERE sku = ?",
                (qty, qty, sku),
            )
        else:
            conn.execute("UPDATE wh.stock SET reserved = reserved - ? WHERE sku = ?", (qty, sku))
            conn.execute("UPDATE inventory SET available = available + ? WHERE sku = ?", (qty, sku))
    return True


def pending_payment_ids(
    conn: sqlite3.Connection,
    *,
    older_than: timedelta | None = None,
    newer_than: timedelta | None = None,
) -> list[int]:
    """Ids of pending payments, optionally limited by age, oldest first."""
    now = datetime.now(UTC)
    sql = "SELECT id FROM payments WHERE status = 'pending'"
    args: list[str] = []
    if older_than is not None:
        sql += " AND created_at <= ?"
        args.append(timestamp(now - older_than))
    if newer_than is not None:
        sql += " AND created_at > ?"
        args.append(timestamp(now - newer_than))
    return [r[0] for r in conn.execute(sql + " ORDER BY created_at, id", args)]


def restock(conn: sqlite3.Connection, *, below: int = 20, amount: int = 200) -> list[str]:
    """A delivery arrives for every SKU with fewer than `below` available; returns them.

    Both sides grow by the same amount, so a drift already there stays (as it would).
    """
    with transaction(conn):
        skus = [
            r[0] for r in conn.execute("SELECT sku FROM inventory WHERE available < ?", (below,))
        ]
        for sku in skus:
            conn.execute(
                "UPDATE inventory SET available = available + ? WHERE sku = ?", (amount, sku)
            )
            conn.execute("UPDATE wh.stock SET on_hand = on_hand + ? WHERE sku = ?", (amount, sku))
    return skus


def drift_stock(
    data_dir: Path, skus: Sequence[str], *, delta: int, side: Literal["shop", "warehouse"] = "shop"
) -> None:
    """Make the given SKUs disagree between the shop and the warehouse by `delta` units.

    `side="shop"` changes `shop.db` inventory (the shop believes it has more or fewer
    than the warehouse); `side="warehouse"` changes the warehouse's on_hand. The shop's
    own updates are relative, so the drift stays until something resyncs it.
    Raises ValueError when delta is 0 or a SKU does not exist.
    """
    if delta == 0:
        raise ValueError("a drift of 0 changes nothing")
    table, column = ("inventory", "available") if side == "shop" else ("wh.stock", "on_hand")
    with closing(connect(data_dir)) as conn, transaction(conn):
        for sku in skus:
            cur = conn.execute(
                f"UPDATE {table} SET {column} = max(0, {column} + ?) WHERE sku = ?", (delta, sku)
            )
            if cur.rowcount != 1:
                raise ValueError(f"unknown SKU {sku!r}")


def stock_mismatches(data_dir: Path) -> dict[str, tuple[int, int]]:
    """SKUs whose shop availability differs from the warehouse's, as (shop, warehouse)."""
    with closing(connect(data_dir, read_only=True)) as conn:
        conn.execute("BEGIN")  # one read snapshot of both files
        rows = conn.execute(
            "SELECT i.sku, i.available, s.on_hand - s.reserved FROM inventory i "
            "JOIN wh.stock s USING (sku) WHERE i.available != s.on_hand - s.reserved ORDER BY i.sku"
        ).fetchall()
        conn.execute("COMMIT")
    return {sku: (shop, warehouse) for sku, shop, warehouse in rows}


def resync_stock(data_dir: Path) -> int:
    """Set the shop's availability from the warehouse (the source of truth); returns rows fixed."""
    with closing(connect(data_dir)) as conn, transaction(conn):
        cur = conn.execute(
            "UPDATE inventory SET available = (SELECT on_hand - reserved FROM wh.stock s "
            "WHERE s.sku = inventory.sku) WHERE available != (SELECT on_hand - reserved "
            "FROM wh.stock s WHERE s.sku = inventory.sku)"
        )
        return cur.rowcount


def strand_payments(
    data_dir: Path,
    count: int,
    *,
    age: timedelta = timedelta(minutes=20),
    rng: random.Random | None = None,
) -> list[int]:
    """Insert `count` orders whose payments sit in `pending`, created `age` ago.

    The payment provider only settles payments it was handed when the order was placed,
    so these stay pending, like payments whose provider callback never arrived, until
    `POST /admin/payments/requeue` settles them. Stock is reserved on both sides as for a
    real order, so stranding breaks no stock invariant. Returns the payment ids.
    """
    rng = rng or random.Random()
    created = timestamp(datetime.now(UTC) - age)
    ids: list[int] = []
    with closing(connect(data_dir)) as conn, transaction(conn):
        catalogue = conn.execute(
            "SELECT sku, price_cents FROM products JOIN inventory USING (sku) WHERE available > 0"
        ).fetchall()
        for sku, price in rng.sample(catalogue, min(count, len(catalogue))):
            conn.execute("UPDATE inventory SET available = available - 1 WHERE sku = ?", (sku,))
            conn.execute("UPDATE wh.stock SET reserved = reserved + 1 WHERE sku = ?", (sku,))
            order_id = _insert_order(conn, sku, 1, price, created)
            ids.append(_insert_payment(conn, order_id, price, created))
    return ids


def backlog(data_dir: Path, *, stuck_after: timedelta = STUCK_AFTER) -> Backlog:
    """Count pending orders and payments, and those pending longer than `stuck_after`."""
    now = datetime.now(UTC)
    with closing(connect(data_dir, read_only=True)) as conn:
        pending_orders = conn.execute(
            "SELECT count(*) FROM orders WHERE status = 'pending'"
        ).fetchone()[0]
        pending, oldest = conn.execute(
            "SELECT count(*), min(created_at) FROM payments WHERE status = 'pending'"
        ).fetchone()
        stuck, amount = conn.execute(
            "SELECT count(*), coalesce(sum(amount_cents), 0) FROM payments "
            "WHERE status = 'pending' AND created_at <= ?",
            (timestamp(now - stuck_after),),
        ).fetchone()
    oldest_s = 0.0
    if oldest is not None:
        oldest_at = datetime.strptime(oldest, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        oldest_s = max(0.0, (now - oldest_at).total_seconds())
    return Backlog(pending_orders, pending, stuck, amount, round(oldest_s, 1))


def _insert_order(conn: sqlite3.Connection, sku: str, qty: int, amount: int, created: str) -> int:
    cur = conn.execute(
        "INSERT INTO orders (sku, qty, status, amount_cents, created_at) VALUES (?, ?, 'pending', ?, ?)",
        (sku, qty, amount, created),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def _insert_payment(conn: sqlite3.Connection, order_id: int, amount: int, created: str) -> int:
    cur = conn.execute(
        "INSERT INTO payments (order_id, amount_cents, status, created_at, updated_at) "
        "VALUES (?, ?, 'pending', ?, ?)",
        (order_id, amount, created, created),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid
