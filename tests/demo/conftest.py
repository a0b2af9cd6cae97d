"""A real demo shop child process on a free port, and a check that none outlives its test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from agent.demo.process import ShopProcess, launch_shop

# No background orders and no declined payments: tests count rows exactly.
QUIET = ("--orders-per-second", "0", "--payment-failure-rate", "0")


def shop_processes(data_dir: Path) -> list[psutil.Process]:
    """Live shop processes serving `data_dir` (zombies count as gone)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        alive = proc.info["status"] != psutil.STATUS_ZOMBIE
        if alive and "agent.demo.shop" in cmdline and str(data_dir) in cmdline:
            found.append(proc)
    return found


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until `check()` is true; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        if check():
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "shop-data"


@pytest.fixture
async def quiet_shop(data_dir: Path) -> AsyncIterator[ShopProcess]:
    """A shop with no background traffic."""
    shop = await launch_shop(data_dir, extra_args=QUIET)
    yield shop
    shop.stop()
    assert shop_processes(data_dir) == []


@pytest.fixture
async def busy_shop(data_dir: Path) -> AsyncIterator[ShopProcess]:
    """A shop placing orders in the background, as in the demo (20 orders/s to be quick)."""
    shop = await launch_shop(
        data_dir, extra_args=("--orders-per-second", "20", "--payment-failure-rate", "0.2")
    )
    yield shop
    shop.stop()
    assert shop_processes(data_dir) == []
