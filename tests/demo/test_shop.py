"""The demo shop as a real child process: data, endpoints, faults, lifecycle."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from agent.demo import data
from agent.demo.faults import (
    DriftStock,
    KillShop,
    RequeuePayments,
    ResyncStock,
    SetFault,
    StartShop,
    StrandPayments,
    apply,
)
from agent.demo.process import ShopProcess, ShopStartError, free_port

from .conftest import eventually, shop_processes


async def get(shop: ShopProcess, path: str, limit_s: float = 5.0) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=limit_s) as client:
        return await client.get(shop.base_url + path)


async def post(shop: ShopProcess, path: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as client:
        return await client.post(shop.base_url + path, json=body)


def table(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(data.connect(data_dir, read_only=True)) as conn:
        rows: list[tuple[Any, ...]] = conn.execute(sql).fetchall()
    return rows


async def test_starts_seeded_consistent_and_healthy(quiet_shop: ShopProcess) -> None:
    health = await get(quiet_shop, "/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "db": "ok", "version": "1.4.2"}

    products = (await get(quiet_shop, "/products")).json()
    assert products["count"] == data.SKU_COUNT == 50
    assert all(p["available"] > 0 for p in products["products"])
    assert data.stock_mismatches(quiet_shop.data_dir) == {}
    assert table(quiet_shop.data_dir, "SELECT count(*) FROM wh.stock") == [(50,)]


async def test_order_reserves_stock_then_provider_captures_it(quiet_shop: ShopProcess) -> None:
    sku_before = table(quiet_shop.data_dir, "SELECT * FROM wh.stock WHERE sku = 'SKU-0007'")[0]

    placed = await post(quiet_shop, "/orders", {"sku": "SKU-0007", "qty": 2})

    assert placed.status_code == 201
    order = placed.json()
    pending = (await get(quiet_shop, "/orders?status=pending")).json()["orders"]
    assert [o["id"] for o in pending] == [order["order_id"]]
    _, on_hand, reserved = table(
        quiet_shop.data_dir, "SELECT * FROM wh.stock WHERE sku = 'SKU-0007'"
    )[0]
    assert (on_hand, reserved) == (sku_before[1], 2)
    assert data.stock_mismatches(quiet_shop.data_dir) == {}

    def paid() -> bool:
        return table(
            quiet_shop.data_dir, f"SELECT status FROM orders WHERE id = {order['order_id']}"
        ) == [("paid",)]

    await eventually(paid)
    assert table(
        quiet_shop.data_dir, f"SELECT status FROM payments WHERE id = {order['payment_id']}"
    ) == [("captured",)]
    _, on_hand, reserved = table(
        quiet_shop.data_dir, "SELECT * FROM wh.stock WHERE sku = 'SKU-0007'"
    )[0]
    assert (on_hand, reserved) == (sku_before[1] - 2, 0)
    assert data.stock_mismatches(quiet_shop.data_dir) == {}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param({"sku": "SKU-0001", "qty": 0}, 400, id="zero-qty"),
        pytest.param({"qty": 1}, 400, id="no-sku"),
        pytest.param(["SKU-0001"], 400, id="not-an-object"),
        pytest.param({"sku": "SKU-9999", "qty": 1}, 409, id="unknown-sku"),
        pytest.param({"sku": "SKU-0001", "qty": 100_000}, 409, id="out-of-stock"),
    ],
)
async def test_bad_orders_are_refused(quiet_shop: ShopProcess, body: Any, status: int) -> None:
    assert (await post(quiet_shop, "/orders", body)).status_code == status
    assert table(quiet_shop.data_dir, "SELECT count(*) FROM orders") == [(0,)]


async def test_orders_filter_by_status_and_reject_unknown(quiet_shop: ShopProcess) -> None:
    await post(quiet_shop, "/orders", {"sku": "SKU-0001"})
    assert (await get(quiet_shop, "/orders?status=pending")).json()["count"] == 1
    assert (await get(quiet_shop, "/orders?status=cancelled")).json()["count"] == 0
    assert (await get(quiet_shop, "/orders?status=lost")).status_code == 400


async def test_slow_fault_outlasts_a_one_second_timeout(quiet_shop: ShopProcess) -> None:
    await apply(SetFault(slow_ms=1500), quiet_shop)
    with pytest.raises(httpx.ReadTimeout):
        await get(quiet_shop, "/health", limit_s=1.0)
    started = time.monotonic()
    assert (await get(quiet_shop, "/health")).status_code == 200
    assert time.monotonic() - started >= 1.5

    await apply(SetFault(reset=True), quiet_shop)
    started = time.monotonic()
    assert (await get(quiet_shop, "/health", limit_s=1.0)).status_code == 200
    assert time.monotonic() - started < 0.5


async def test_degraded_and_error_faults_and_reset(quiet_shop: ShopProcess) -> None:
    await apply(SetFault(health="degraded"), quiet_shop)
    health = await get(quiet_shop, "/health")
    assert (health.status_code, health.json()["status"]) == (200, "degraded")

    await apply(SetFault(errors=True), quiet_shop)
    assert (await get(quiet_shop, "/health")).status_code == 500
    assert (await get(quiet_shop, "/products")).status_code == 500
    admin = await get(quiet_shop, "/admin/fault")  # the admin API stays usable to undo it
    assert admin.json() == {"slow_ms": 0, "health": "degraded", "errors": True, "traffic": True}

    await apply(SetFault(reset=True), quiet_shop)
    assert (await get(quiet_shop, "/health")).json()["status"] == "ok"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"slow_ms": 100, "bogus": 1}, id="unknown-key"),
        pytest.param({"slow_ms": -1}, id="negative-delay"),
        pytest.param({"health": "sick"}, id="unknown-health"),
        pytest.param({"errors": "yes"}, id="non-boolean"),
        pytest.param({"reset": False}, id="reset-false"),
    ],
)
async def test_invalid_fault_changes_nothing(
    quiet_shop: ShopProcess, change: dict[str, Any]
) -> None:
    answer = await post(quiet_shop, "/admin/fault", change)
    assert answer.status_code == 400
    assert (await get(quiet_shop, "/admin/fault")).json()["slow_ms"] == 0


async def test_killed_shop_refuses_connections_and_restarts(quiet_shop: ShopProcess) -> None:
    old_pid = quiet_shop.pid
    assert old_pid is not None

    await apply(KillShop(), quiet_shop)

    assert not psutil.pid_exists(old_pid)
    with pytest.raises(httpx.ConnectError):
        await get(quiet_shop, "/health")

    await apply(StartShop(), quiet_shop)

    assert quiet_shop.pid not in (None, old_pid)
    assert (await get(quiet_shop, "/health")).status_code == 200
    assert len(shop_processes(quiet_shop.data_dir)) == 1


async def test_drift_makes_exactly_the_chosen_skus_disagree(busy_shop: ShopProcess) -> None:
    chosen = ("SKU-0003", "SKU-0017", "SKU-0042")
    await asyncio.sleep(0.5)  # let background orders run before, during and after the drift
    await apply(DriftStock(chosen, delta=5), busy_shop)
    await asyncio.sleep(1.0)
    await apply(SetFault(reset=True), busy_shop)
    await post(busy_shop, "/admin/fault", {"traffic": False})
    await eventually(lambda: data.backlog(busy_shop.data_dir).pending_payments == 0)
    assert table(busy_shop.data_dir, "SELECT count(*) FROM orders")[0][0] > 5

    mismatches = data.stock_mismatches(busy_shop.data_dir)

    assert sorted(mismatches) == list(chosen)
    assert all(shop - warehouse == 5 for shop, warehouse in mismatches.values())

    await apply(ResyncStock(), busy_shop)
    assert data.stock_mismatches(busy_shop.data_dir) == {}


async def test_drift_on_the_warehouse_side(quiet_shop: ShopProcess) -> None:
    await apply(DriftStock(("SKU-0010",), delta=-4, side="warehouse"), quiet_shop)
    (shop, warehouse) = data.stock_mismatches(quiet_shop.data_dir)["SKU-0010"]
    assert warehouse == shop - 4


def backlog_values(data_dir: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "agent.demo.backlog", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return {k: float(v) for k, v in (line.split("=") for line in out.splitlines())}


async def test_stranded_payments_stay_pending_until_requeued(quiet_shop: ShopProcess) -> None:
    assert backlog_values(quiet_shop.data_dir)["stuck_payments"] == 0

    await apply(StrandPayments(3), quiet_shop)
    await asyncio.sleep(1.5)  # longer than the provider takes: it must not settle them

    values = backlog_values(quiet_shop.data_dir)
    assert values["stuck_payments"] == 3
    assert values["pending_orders"] == 3
    assert values["stuck_amount_cents"] > 0
    assert values["oldest_pending_s"] >= 20 * 60
    assert data.stock_mismatches(quiet_shop.data_dir) == {}

    assert await apply(RequeuePayments(), quiet_shop) == "3 settled"

    assert backlog_values(quiet_shop.data_dir)["stuck_payments"] == 0
    assert data.stock_mismatches(quiet_shop.data_dir) == {}


def test_backlog_without_data_exits_2(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "agent.demo.backlog", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert "no shop.db" in run.stderr


async def test_sigterm_stops_the_shop_cleanly(quiet_shop: ShopProcess) -> None:
    quiet_shop.stop()
    assert quiet_shop._proc is not None and quiet_shop._proc.returncode == 0
    assert "shop: stopped" in quiet_shop.log_path.read_text()


async def test_a_taken_port_is_reported(data_dir: Path) -> None:
    async with await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        shop = ShopProcess(data_dir, port)
        shop.start()
        with pytest.raises(ShopStartError, match="exited"):
            await shop.wait_ready()
    assert "cannot listen" in shop.log_path.read_text()


def test_shop_exits_when_its_parent_dies(data_dir: Path) -> None:
    port = free_port()
    # A parent that starts the shop and then dies by SIGKILL, with no chance to clean up.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio, sys, time\n"
            "from pathlib import Path\n"
            "from agent.demo.process import ShopProcess\n"
            f"shop = ShopProcess(Path({str(data_dir)!r}), {port})\n"
            "shop.start()\n"
            "asyncio.run(shop.wait_ready())\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "ready\n"
        assert len(shop_processes(data_dir)) == 1
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        deadline = time.monotonic() + 5
        while shop_processes(data_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert shop_processes(data_dir) == []
    finally:
        parent.kill()
        parent.wait(5)
        for orphan in shop_processes(data_dir):
            orphan.kill()
