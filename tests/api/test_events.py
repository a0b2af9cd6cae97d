"""`/v1/events`: server-sent results and status changes; slow clients lose the oldest, and are told."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from agent.api.events import EventHub
from agent.client import AsyncAgentClient, Endpoint, Event
from agent.results import ProbeResult, Status
from tests.running_agent import StartAgent, Target, agent_yaml


def result(probe: str, status: Status = Status.OK) -> ProbeResult:
    return ProbeResult(
        probe=probe, kind="http", started_at=datetime.now(UTC), duration_ms=1.0, status=status
    )


async def test_stream_carries_results_and_state_changes(
    start_agent: StartAgent, target: Target
) -> None:
    running = await start_agent(agent_yaml(target.base))
    seen: list[Event] = []

    async def listen() -> None:
        async with AsyncAgentClient(Endpoint(running.url, running.token)) as client:
            async for event in client.events(probe="web"):
                seen.append(event)
                if event.event == "state":
                    return

    listener = asyncio.create_task(listen())
    for _ in range(400):  # flip only once the stream carries an ok result (slow machines)
        if any(e.event == "result" for e in seen):
            break
        await asyncio.sleep(0.025)
    target.healthy = False  # web flips from ok to fail
    await asyncio.wait_for(listener, 10)

    results = [e.data for e in seen if e.event == "result"]
    assert results and {r["probe"] for r in results} == {"web"}  # the filter holds
    assert results[0]["status"] == "ok" and results[-1]["status"] == "fail"
    change = seen[-1].data
    assert change["probe"] == "web" and change["previous"] == "ok" and change["status"] == "fail"
    assert "status == 200 failed: status is 503" in change["detail"]


async def test_streams_end_when_the_agent_stops(start_agent: StartAgent, target: Target) -> None:
    running = await start_agent(agent_yaml(target.base))
    got: list[str] = []

    async def listen() -> None:
        async with AsyncAgentClient(Endpoint(running.url, running.token)) as client:
            async for event in client.events():
                got.append(event.event)

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.5)
    assert running.agent.events.subscribers == 1
    running.agent.events.close()  # what the agent does first when it stops
    await asyncio.wait_for(listener, 5)
    assert "result" in got


async def test_a_slow_client_loses_the_oldest_events_and_is_told() -> None:
    hub = EventHub(queue_size=3)
    subscription = hub.subscribe()
    for _ in range(10):
        hub(result("web"))
    frames = subscription.frames(keepalive=0.05)
    first = await anext(frames)
    assert first == b'event: dropped\ndata: {"dropped": 7}\n\n'
    kept = [await anext(frames) for _ in range(3)]
    assert all(frame.startswith(b"event: result\n") for frame in kept)
    assert await anext(frames) == b": keepalive\n\n"  # nothing left: the line stays alive
    hub.close()
    assert [f async for f in frames] == []


def test_state_events_only_on_a_change_and_not_after_a_restart() -> None:
    hub = EventHub()
    hub.seed({"web": "fail"})  # the status stored before the agent restarted
    subscription = hub.subscribe()
    hub(result("web", Status.FAIL))
    hub(result("web", Status.OK))
    hub(result("web", Status.OK))
    frames = list(subscription._frames)
    events = [f.split(b"\n")[0] for f in frames]
    assert events == [b"event: result", b"event: result", b"event: state", b"event: result"]
    state = json.loads(frames[2].split(b"data: ")[1])
    assert (state["previous"], state["status"]) == ("fail", "ok")
