"""The demo shop backend: a small online-shop API over two SQLite files.

Run as a child process by the demo (`python -m agent.demo.shop --port 8080 --data-dir
var/demo`), so that the agent can probe it, the fault injector can kill it, and a
crash of one never takes the other down. It listens on 127.0.0.1 only.

    GET  /health                 {"status": "ok", "db": "ok", "version": ...}
    GET  /products               the catalogue with availability
    GET  /orders?status=pending  the latest orders, optionally by status
    POST /orders                 {"sku": "SKU-0001", "qty": 1} -> order + pending payment
    GET  /admin/fault            the faults in force
    POST /admin/fault            {"slow_ms": 1500} | {"health": "degraded"} | {"errors": true}
                                 | {"traffic": false} | {"reset": true}
    POST /admin/payments/requeue settle payments left pending (the stuck-payment repair)
    POST /admin/cache/clear      empty the catalogue cache (a repair that fixes no injected
                                 fault: the demo's remediation that trips its circuit breaker)

Two background tasks make it look alive: `traffic` places a few orders per second and
`provider` plays the payment provider, capturing each payment about a second after
its order. The provider only knows payments handed to it when their order was placed
(plus, after a restart, those younger than a minute), so payments written straight
into shop.db stay pending until requeued: that is how the demo strands payments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import psutil
from aiohttp import web
from aiohttp.typedefs import Handler

from agent.demo import data

VERSION = "1.4.2"
PROVIDER_DELAY_S = 1.0  # how long the payment provider takes to confirm a payment
RECOVER_WINDOW = timedelta(minutes=1)  # pending payments a restarted provider picks up again
REQUEUE_MIN_AGE = timedelta(seconds=30)  # younger pending payments are still in flight
PARENT_POLL_S = 0.5

T = TypeVar("T")


@dataclass
class Faults:
    """The behaviour injected through `POST /admin/fault`; the default is a healthy shop."""

    slow_ms: int = 0  # delay before every public endpoint answers
    health: str = "ok"  # what /health reports as status: ok | degraded
    errors: bool = False  # public endpoints answer 500
    traffic: bool = True  # the background order generator runs

    def update(self, change: dict[str, Any]) -> None:
        """Apply a change; raises ValueError (naming the key) for anything unknown or invalid."""
        if change.get("reset") is True:
            for name, value in asdict(Faults()).items():
                setattr(self, name, value)
        for key, value in change.items():
            if key == "reset":
                if value is not True:
                    raise ValueError("reset must be true")
            elif key == "slow_ms":
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int)
                    or not 0 <= value <= 60_000
                ):
                    raise ValueError("slow_ms must be an integer from 0 to 60000")
                self.slow_ms = value
            elif key == "health":
                if value not in ("ok", "degraded"):
                    raise ValueError("health must be 'ok' or 'degraded'")
                self.health = value
            elif key in ("errors", "traffic"):
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
                setattr(self, key, value)
            else:
                raise ValueError(f"unknown fault {key!r}")


class ShopDb:
    """The shop's one connection, used from one worker thread so SQLite never blocks the loop."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shop-db")
        self._conn: sqlite3.Connection | None = None

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(conn, *args, **kwargs)` on the database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, lambda: fn(self._connection(), *args, **kwargs)
        )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = data.connect(self._data_dir)
        return self._conn

    async def close(self) -> None:
        """Close the connection on its own thread, then stop the thread."""

        def _close() -> None:
            if self._conn is not None:
                self._conn.close()

        await asyncio.get_running_loop().run_in_executor(self._pool, _close)
        self._pool.shutdown(wait=True)


@dataclass
class Settings:
    """What the command line sets."""

    data_dir: Path
    orders_per_second: float = 3.0
    payment_failure_rate: float = 0.03


DB = web.AppKey("db", ShopDb)
FAULTS = web.AppKey("faults", Faults)
SETTINGS = web.AppKey("settings", Settings)
PAYMENTS = web.AppKey("payments", asyncio.Queue[tuple[float, int]])


def create_app(settings: Settings) -> web.Application:
    """Build the shop application; background tasks start and stop with it."""
    app = web.Application(middlewares=[_inject_faults])
    app[SETTINGS] = settings
    app[FAULTS] = Faults()
    app[DB] = ShopDb(settings.data_dir)
    app[PAYMENTS] = asyncio.Queue()
    app.router.add_get("/health", health)
    app.router.add_get("/products", products)
    app.router.add_get("/orders", list_orders)
    app.router.add_post("/orders", create_order)
    app.router.add_get("/admin/fault", get_fault)
    app.router.add_post("/admin/fault", set_fault)
    app.router.add_post("/admin/payments/requeue", requeue_payments)
    app.router.add_post("/admin/cache/clear", clear_cache)
    app.cleanup_ctx.append(_background)
    return app


@web.middleware
async def _inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Slow down or break every public endpoint; /admin stays usable to undo it."""
    faults = request.app[FAULTS]
    if not request.path.startswith("/admin/"):
        if faults.slow_ms:
            await asyncio.sleep(faults.slow_ms / 1000)
        if faults.errors:
            return web.json_response({"error": "internal error (injected fault)"}, status=500)
    return await handler(request)


async def health(request: web.Request) -> web.Response:
    """Report the shop's status after checking both databases answer."""
    try:
        await request.app[DB].call(_check_db)
    except sqlite3.Error as exc:
        body = {"status": "error", "db": f"error: {exc}", "version": VERSION}
        return web.json_response(body, status=503)
    return web.json_response({"status": request.app[FAULTS].health, "db": "ok", "version": VERSION})


def _check_db(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT count(*) FROM products").fetchone()
    conn.execute("SELECT count(*) FROM wh.stock").fetchone()


async def products(request: web.Request) -> web.Response:
    """The catalogue: SKU, name, price and what the shop believes is available."""
    rows = await request.app[DB].call(
        lambda conn: conn.execute(
            "SELECT sku, name, price_cents, available FROM products JOIN inventory USING (sku) "
            "ORDER BY sku"
        ).fetchall()
    )
    items = [{"sku": s, "name": n, "price_cents": p, "available": a} for s, n, p, a in rows]
    return web.json_response({"count": len(items), "products": items})


async def list_orders(request: web.Request) -> web.Response:
    """The latest orders (newest first), filtered by `?status=` and capped by `?limit=`."""
    status = request.query.get("status")
    if status is not None and status not in data.ORDER_STATUSES:
        return _bad_request(f"status must be one of {', '.join(data.ORDER_STATUSES)}")
    try:
        limit = min(max(int(request.query.get("limit", "100")), 1), 1000)
    except ValueError:
        return _bad_request("limit must be an integer")
    sql = "SELECT id, sku, qty, status, amount_cents, created_at FROM orders"
    args: list[Any] = []
    if status is not None:
        sql += " WHERE status = ?"
        args.append(status)
    sql += " ORDER BY id DESC LIMIT ?"
    rows = await request.app[DB].call(lambda conn: conn.execute(sql, [*args, limit]).fetchall())
    keys = ("id", "sku", "qty", "status", "amount_cents", "created_at")
    orders = [dict(zip(keys, row, strict=True)) for row in rows]
    return web.json_response({"count": len(orders), "orders": orders})


async def create_order(request: web.Request) -> web.Response:
    """Place an order: reserve stock, create a pending payment, hand it to the provider."""
    try:
        body = await request.json()
        sku, qty = body["sku"], body.get("qty", 1)
        if not isinstance(sku, str) or isinstance(qty, bool) or not isinstance(qty, int) or qty < 1:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return _bad_request('expected JSON {"sku": "SKU-0001", "qty": 1} with qty >= 1')
    placed = await _place(request.app, sku, qty)
    if placed is None:
        return web.json_response({"error": f"{sku} unknown or not enough in stock"}, status=409)
    return web.json_response(asdict(placed), status=201)


async def get_fault(request: web.Request) -> web.Response:
    """The faults in force."""
    return web.json_response(asdict(request.app[FAULTS]))


async def set_fault(request: web.Request) -> web.Response:
    """Change the injected faults at run time; answers with the faults now in force."""
    try:
        change = await request.json()
        if not isinstance(change, dict):
            raise ValueError("expected a JSON object")
        faults = request.app[FAULTS]
        trial = Faults(**asdict(faults))
        trial.update(change)  # validate everything before changing anything
        faults.update(change)
    except (ValueError, json.JSONDecodeError) as exc:
        return _bad_request(str(exc))
    return web.json_response(asdict(faults))


async def requeue_payments(request: web.Request) -> web.Response:
    """Capture every payment pending for longer than the provider normally takes.

    Payments younger than 30 s are still with the provider and are left alone, so a
    repair never races the provider. Answers `{"requeued": N, "payment_ids": [...]}`.
    """
    db = request.app[DB]
    ids = await db.call(data.pending_payment_ids, older_than=REQUEUE_MIN_AGE)
    settled = [pid for pid in ids if await db.call(data.settle_payment, pid, captured=True)]
    return web.json_response({"requeued": len(settled), "payment_ids": settled})


async def clear_cache(request: web.Request) -> web.Response:
    """Forget the cached catalogue. The shop caches nothing that an injected fault touches,
    so this answers 200 and changes nothing a probe sees: the demo's ineffective repair."""
    return web.json_response({"cleared": 0})


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def _place(app: web.Application, sku: str, qty: int) -> data.PlacedOrder | None:
    placed = await app[DB].call(data.place_order, sku, qty)
    if placed is not None:
        app[PAYMENTS].put_nowait((time.monotonic() + PROVIDER_DELAY_S, placed.payment_id))
    return placed


async def _background(app: web.Application) -> AsyncIterator[None]:
    """Run the provider and the traffic generator for the app's lifetime."""
    recovered = await app[DB].call(data.pending_payment_ids, newer_than=RECOVER_WINDOW)
    for payment_id in recovered:
        app[PAYMENTS].put_nowait((time.monotonic(), payment_id))
    tasks = [asyncio.create_task(_provider(app)), asyncio.create_task(_traffic(app))]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await app[DB].close()


async def _provider(app: web.Application) -> None:
    """Settle each queued payment once its provider delay has passed."""
    queue, settings = app[PAYMENTS], app[SETTINGS]
    while True:
        due, payment_id = await queue.get()
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        captured = random.random() >= settings.payment_failure_rate
        try:
            await app[DB].call(data.settle_payment, payment_id, captured=captured)
        except sqlite3.Error as exc:  # e.g. locked for too long: the payment stays pending
            print(f"provider: payment {payment_id} not settled: {exc}", file=sys.stderr)


async def _traffic(app: web.Application) -> None:
    """Place orders at random (Poisson) intervals, and restock what runs low."""
    settings, faults = app[SETTINGS], app[FAULTS]
    if settings.orders_per_second <= 0:
        return
    skus = [data.sku_name(i) for i in range(1, data.SKU_COUNT + 1)]
    last_restock = time.monotonic()
    while True:
        await asyncio.sleep(random.expovariate(settings.orders_per_second))
        if not faults.traffic:
            continue
        try:
            await _place(app, random.choice(skus), random.randint(1, 3))
            if time.monotonic() - last_restock > 5:
                last_restock = time.monotonic()
                await app[DB].call(data.restock)
        except sqlite3.Error as exc:
            print(f"traffic: order not placed: {exc}", file=sys.stderr)


async def serve(port: int, settings: Settings, parent_pid: int | None = None) -> int:
    """Seed the data, serve until SIGTERM/SIGINT (or the parent dies); returns an exit code."""
    data.seed(settings.data_dir)
    runner = web.AppRunner(create_app(settings), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    except OSError as exc:
        await runner.cleanup()
        print(f"shop: cannot listen on 127.0.0.1:{port}: {exc}", file=sys.stderr)
        return 3
    print(f"shop: listening on http://127.0.0.1:{port} (data in {settings.data_dir})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid else None
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
    await runner.cleanup()
    print("shop: stopped", flush=True)
    return 0


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Stop when the demo that started us is gone, so a killed demo leaves no orphan.

    The demo may be our parent, or (when its agent restarted us) our grandparent's
    process: we watch the pid itself, not `getppid()`.
    """
    while True:  # no event tells us a process died: polling is the portable way
        if not _alive(parent_pid):
            stop.set()
            return
        await asyncio.sleep(PARENT_POLL_S)


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    if os.getppid() == pid:
        return True
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: `python -m agent.demo.shop --port PORT --data-dir DIR`."""
    parser = argparse.ArgumentParser(
        prog="python -m agent.demo.shop",
        description="The opsagent demo shop: an HTTP API over shop.db and warehouse.db.",
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="where shop.db and warehouse.db live (created and seeded if missing)",
    )
    parser.add_argument(
        "--orders-per-second",
        type=float,
        default=3.0,
        help="background order rate; 0 turns the traffic off (default 3)",
    )
    parser.add_argument(
        "--payment-failure-rate",
        type=float,
        default=0.03,
        help="share of payments the provider declines (default 0.03)",
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="exit when this process (the demo that started us) is gone; 0: never",
    )
    args = parser.parse_args(argv)
    settings = Settings(args.data_dir, args.orders_per_second, args.payment_failure_rate)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(args.port, settings, args.parent_pid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
