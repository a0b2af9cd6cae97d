"""Space calls to one destination at least `interval` seconds apart."""

from __future__ import annotations

import asyncio


class Pacer:
    """Hands out send slots `interval` seconds apart, first come first served.

    Each caller reserves the next free slot before sleeping, so concurrent senders
    queue in order without a lock, and a burst of N messages takes (N-1) * interval.
    A cancelled caller leaves its slot unused, which only makes the pace gentler.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = 0.0

    async def wait(self) -> None:
        """Return when this caller may send."""
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)
