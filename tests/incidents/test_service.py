"""Incidents with the real DuckDB store and the outbox: nothing told before it is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent import store_incidents as sql
from agent.errors import NotifyError
from agent.incidents.models import IncidentState, Matcher, Policy
from agent.incidents.service import IncidentService
from agent.notices import Delivery, Notice
from agent.outbox import Outbox
from agent.results import ProbeResult, Status
from agent.store import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def result(t: datetime, failed: bool) -> ProbeResult:
    return ProbeResult(
        probe="shop-api",
        kind="http",
        started_at=t,
        duration_ms=1.0,
        status=Status.FAIL if failed else Status.OK,
        error="connect refused 127.0.0.1:8080" if failed else None,
    )


class Receiver:
    """Records deliveries; can fail the next calls on purpose."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, dict[str, str] | None]] = []
        self.fail_with: list[NotifyError] = []

    async def __call__(self, notice: Notice, previous: dict[str, str] | None) -> Delivery:
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.got.append((notice.event.value, notice.target, previous))
        return Delivery(ref={"ts": f"ts-{notice.id}"} if previous is None else previous)


async def open_store(path: Path) -> Store:
    store = Store.open(path)
    await store.start()
    return store


async def test_open_notify_resolve_update_in_place(tmp_path: Path) -> None:
    clock = Clock()
    store = await open_store(tmp_path / "s.duckdb")
    receiver = Receiver()
    outbox = Outbox(store, receiver, clock=clock)
    service = IncidentService(
        store, lambda _: Policy(notify=("slack",)), agent_name="t", clock=clock
    )
    await service.start()
    for i in range(3):
        await service.observe(result(T0 + timedelta(seconds=10 * i), True))
    incident = (await store.run(sql.active))[0]
    assert incident.state is IncidentState.OPEN and incident.notified
    assert [e.event for e in await store.run(lambda c: sql.events(c, incident.id))] == [
        "pending",
        "opened",
    ]
    assert (await store.run(sql.counts)).pending == 1  # stored before anything is sent

    assert await outbox.run_once() == 1
    assert receiver.got == [("opened", "slack", None)]
    await service.observe(result(T0 + timedelta(seconds=30), False))
    await service.observe(result(T0 + timedelta(seconds=40), False))
    await outbox.run_once()
    assert receiver.got[1] == ("resolved", "slack", {"ts": "ts-1"})  # the same message is updated
    counts = await store.run(sql.counts)
    assert (counts.pending, counts.sent, counts.dead) == (0, 2, 0)
    await store.close()


async def test_retry_after_and_permanent_errors(tmp_path: Path) -> None:
    clock = Clock()
    store = await open_store(tmp_path / "s.duckdb")
    receiver = Receiver()
    outbox = Outbox(store, receiver, clock=clock)
    service = IncidentService(
        store, lambda _: Policy(notify=("slack", "mail"), failures=1), agent_name="t", clock=clock
    )
    await service.start()
    await service.observe(result(T0, True))
    receiver.fail_with = [
        NotifyError("rate limited", retry_after=30),
        NotifyError("bad auth", permanent=True),
    ]
    await outbox.run_once()
    rows = {r[3]: r for r in await store.run(lambda c: sql.notifications(c))}
    assert rows["slack"][4] == "pending" and rows["slack"][6] == "rate limited"
    assert rows["mail"][4] == "dead" and rows["mail"][6] == "bad auth"
    clock.now = T0 + timedelta(seconds=29)
    assert await outbox.run_once() == 0  # Retry-After is honoured
    clock.now = T0 + timedelta(seconds=31)
    assert await outbox.run_once() == 1
    assert receiver.got == [("opened", "slack", None)]
    assert (await store.run(sql.counts)).dead == 1
    await store.close()


async def test_restart_keeps_incidents_and_sends_pending_notices_once(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "s.duckdb"
    store = await open_store(path)
    service = IncidentService(
        store, lambda _: Policy(notify=("slack",)), agent_name="t", clock=clock
    )
    await service.start()
    for i in range(3):
        await service.observe(result(T0 + timedelta(seconds=10 * i), True))
    await store.close()  # the agent stops before the outbox ran

    store = await open_store(path)
    receiver = Receiver()
    service = IncidentService(
        store, lambda _: Policy(notify=("slack",)), agent_name="t", clock=clock
    )
    await service.start()
    outbox = Outbox(store, receiver, clock=clock)
    await outbox.start()
    await outbox.stop()
    await outbox.run_once()
    await outbox.run_once()
    assert receiver.got == [("opened", "slack", None)]
    # Still failing after the restart: no new incident, no new alert.
    out = await service.observe(result(T0 + timedelta(seconds=40), True))
    assert out.notices == [] and len(await store.run(sql.active)) == 1
    assert (await store.run(sql.next_ids))[0] == 2
    await store.close()


async def test_ack_and_silence_are_stored_with_their_actor(tmp_path: Path) -> None:
    clock = Clock()
    store = await open_store(tmp_path / "s.duckdb")
    service = IncidentService(
        store, lambda _: Policy(notify=("slack",), failures=1), agent_name="t", clock=clock
    )
    await service.start()
    await service.observe(result(T0, True))
    acked = await service.acknowledge(1, "alice", comment="looking")
    assert acked.state is IncidentState.ACKNOWLEDGED
    silence = await service.silence(
        Matcher.parse("shop-*"), timedelta(hours=1), reason="deploy", created_by="bob"
    )
    events = await store.run(lambda c: sql.events(c, 1))
    assert [(e.event, e.actor) for e in events] == [
        ("pending", "opsagent"),
        ("opened", "opsagent"),
        ("acknowledged", "alice"),
        ("silenced", "bob"),
    ]
    stored = await store.run(lambda c: sql.silences(c, now=clock.now))
    assert [(s.id, str(s.matcher), s.reason) for s in stored] == [(silence.id, "shop-*", "deploy")]
    await store.close()


async def test_a_silence_ended_by_its_incident_is_stored_as_ended(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "s.duckdb"
    store = await open_store(path)
    policy = Policy(notify=("slack",), failures=1, successes=1)
    service = IncidentService(store, lambda _: policy, agent_name="t", clock=clock)
    await service.start()
    await service.observe(result(T0, True))
    silence = await service.silence(
        Matcher.parse("shop-api"),
        timedelta(hours=2),
        reason="known",
        created_by="bob",
        end_on_resolve=True,
    )
    clock.now = T0 + timedelta(seconds=10)
    await service.observe(result(clock.now, False))
    await store.close()
    with Store.open(path, read_only=True) as reopened:
        stored = reopened.run_read_only(lambda c: sql.silences(c))
    assert [(s.id, s.ended_at) for s in stored] == [(silence.id, clock.now)]
