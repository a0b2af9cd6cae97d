"""Server-sent events: every new result and every status change, for live clients.

The hub is a pipeline listener. Each client has a bounded queue: a client too slow to
keep up loses its oldest events, never slows the pipeline, and is told how many it lost
(a `dropped` event) so a dashboard knows to refresh.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import AsyncIterator

from agent.api.models import StateChange
from agent.results import ProbeResult

QUEUE_SIZE = 1000
KEEPALIVE_S = 15.0  # a comment line this often, so proxies and clients see a live stream


def frame(event: str, data: str) -> bytes:
    """One SSE frame (`data` is a single line of JSON)."""
    return f"event: {event}\ndata: {data}\n\n".encode()


class Subscription:
    """One client's queue of frames."""

    def __init__(self, probe: str | None, size: int) -> None:
        self.probe = probe
        self._frames: collections.deque[bytes] = collections.deque(maxlen=size)
        self._ready = asyncio.Event()
        self.dropped = 0  # not yet reported to the client
        self.closed = False

    def put(self, data: bytes) -> None:
        """Queue a frame; when full, the oldest one goes and is counted as dropped."""
        if len(self._frames) == self._frames.maxlen:
            self.dropped += 1  # the deque drops the oldest frame itself
        self._frames.append(data)
        self._ready.set()

    def close(self) -> None:
        """End the stream after the frames already queued."""
        self.closed = True
        self._ready.set()

    async def frames(self, keepalive: float = KEEPALIVE_S) -> AsyncIterator[bytes]:
        """Frames as they come; a keepalive comment when idle; ends when closed."""
        while True:
            if not self._frames and not self.closed:
                self._ready.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(keepalive):
                        await self._ready.wait()
            if self.dropped:
                dropped, self.dropped = self.dropped, 0
                yield frame("dropped", json.dumps({"dropped": dropped}))
            if self._frames:
                while self._frames:
                    yield self._frames.popleft()
            elif self.closed:
                return
            else:
                yield b": keepalive\n\n"


class EventHub:
    """Fans results and status changes out to subscribers."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._status: dict[str, str] = {}
        self._closed = False

    def seed(self, statuses: dict[str, str]) -> None:
        """The last known status of each probe, so the first result after a start is no change."""
        self._status.update(statuses)

    def __call__(self, result: ProbeResult) -> None:
        """The pipeline listener."""
        previous = self._status.get(result.probe)
        status = result.status.value
        self._status[result.probe] = status
        if not self._subscribers:
            return  # nothing to serialise for nobody
        targets = [s for s in self._subscribers if s.probe in (None, result.probe)]
        if not targets:
            return
        data = frame("result", result.model_dump_json())
        change = None
        if previous is not None and previous != status:
            change = StateChange(
                probe=result.probe,
                previous=previous,
                status=status,
                at=result.started_at,
                detail=result.error or "; ".join(result.failed) or result.detail,
            )
            change_data = frame("state", change.model_dump_json())
        for subscription in targets:
            subscription.put(data)
            if change is not None:
                subscription.put(change_data)

    def subscribe(self, probe: str | None = None) -> Subscription:
        """A new client queue; call `unsubscribe` when the client goes."""
        subscription = Subscription(probe, self._queue_size)
        if self._closed:
            subscription.close()
        else:
            self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a client that left."""
        self._subscribers.discard(subscription)

    @property
    def subscribers(self) -> int:
        """Clients connected now."""
        return len(self._subscribers)

    def close(self) -> None:
        """End every stream (at shutdown)."""
        self._closed = True
        for subscription in self._subscribers:
            subscription.close()
        self._subscribers.clear()
