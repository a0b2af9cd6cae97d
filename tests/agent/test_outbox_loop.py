"""The outbox's sender loop in real time: a wake-up is never lost, a queue drains at once.

The unit tests drive `Outbox.run_once()` by hand; these start the sender task and
measure when deliveries happen, with a long `poll_every` so that anything that waits
for the poll instead of the wake-up shows.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent.errors import NotifyError
from agent.incidents.models import Policy
from agent.incidents.service import IncidentService
from agent.notices import Delivery, Notice
from agent.outbox import Outbox
from agent.results import ProbeResult, Status, utcnow
from agent.store import Store

POLL = 5.0  # far longer than any delivery below should take


def failing(probe: str) -> ProbeResult:
    return ProbeResult(
        probe=probe,
        kind="http",
        started_at=utcnow(),
        duration_ms=1.0,
        status=Status.FAIL,
        error="connect refused 127.0.0.1:8080",
    )


class Receiver:
    """Records when each notice arrives; the first delivery can be held at a gate."""

    def __init__(self) -> None:
        self.got: list[tuple[str, float]] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, notice: Notice, previous: dict[str, str] | None) -> Delivery:
        self.entered.set()
        if self.gate is not None:
            gate, self.gate = self.gate, None
            await gate.wait()
        self.got.append((notice.incident.probe, time.monotonic()))
        return Delivery(ref={"id": str(notice.id)})


async def start(tmp_path: Path, receiver: Receiver) -> tuple[Store, Outbox, IncidentService]:
    store = Store.open(tmp_path / "s.duckdb")
    await store.start()
    outbox = Outbox(store, receiver, poll_every=POLL)
    service = IncidentService(
        store,
        lambda _: Policy(notify=("hook",), failures=1),
        agent_name="t",
        on_notices=outbox.wake,
    )
    await service.start()
    return store, outbox, service


async def wait_for(receiver: Receiver, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while len(receiver.got) < count:
        assert time.monotonic() < deadline, f"{receiver.got} after {within}s"
        await asyncio.sleep(0.01)


async def test_a_notice_written_during_a_send_is_sent_without_waiting_for_the_poll(
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    gate = receiver.gate = asyncio.Event()
    store, outbox, service = await start(tmp_path, receiver)
    await outbox.start()
    try:
        await service.observe(failing("shop-api"))  # notice 1: the sender picks it up
        await asyncio.wait_for(receiver.entered.wait(), 2)
        await service.observe(failing("shop-cart"))  # notice 2, written (and woken) mid-send
        woken = time.monotonic()
        gate.set()  # the first send ends; its round ends after notice 2 was written
        await wait_for(receiver, 2, within=POLL + 2)
        assert [p for p, _ in receiver.got] == ["shop-api", "shop-cart"]
        assert receiver.got[1][1] - woken < 1.0, "the wake-up during the send was lost"
    finally:
        await outbox.stop()
        await store.close()


async def test_notices_queued_for_one_target_go_out_one_after_the_other_at_once(
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    store, outbox, service = await start(tmp_path, receiver)
    for probe in ("a", "b", "c"):
        await service.observe(failing(probe))  # three notices for the same target
    began = time.monotonic()
    await outbox.start()
    try:
        await wait_for(receiver, 3, within=3 * POLL + 2)
        assert [p for p, _ in receiver.got] == ["a", "b", "c"]  # in order
        assert receiver.got[-1][1] - began < 1.0, "each queued notice waited for the poll"
    finally:
        await outbox.stop()
        await store.close()


async def test_a_retry_goes_out_when_due_without_waiting_for_the_poll(tmp_path: Path) -> None:
    """Only retries wait on a timer (the poll is a long safety net): it ends when one is due."""
    receiver = Receiver()
    attempts: list[float] = []

    async def flaky(notice: Notice, previous: dict[str, str] | None) -> Delivery:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise NotifyError("HTTP 429", retry_after=0.5)
        return await receiver(notice, previous)

    store, _, service = await start(tmp_path, receiver)
    outbox = Outbox(store, flaky, poll_every=POLL)
    await service.observe(failing("shop-api"))
    await outbox.start()
    try:
        await wait_for(receiver, 1, within=POLL + 2)
        assert len(attempts) == 2
        waited = attempts[1] - attempts[0]
        assert 0.45 <= waited < 1.5, f"the retry came {waited:.2f}s after the failure"
    finally:
        await outbox.stop()
        await store.close()


async def test_the_idle_sender_leaves_no_half_read_result_that_would_break_ingest(
    tmp_path: Path,
) -> None:
    """DuckDB 2.0 refuses an appender flush while a read is unfinished: every round reads fully."""
    receiver = Receiver()
    store, outbox, _ = await start(tmp_path, receiver)
    await outbox.start()
    try:
        for probe in ("a", "b", "c"):
            await asyncio.sleep(0.1)  # the sender's rounds and sleeps interleave with writes
            outbox.wake()
            await asyncio.sleep(0.05)
            store.append(failing(probe))
            await store.flush()
        assert store.stats().failed_flushes == 0, store.stats().last_error
    finally:
        await outbox.stop()
        await store.close()
