"""A small connection pool that tells the truth about why it cannot connect.

psycopg_pool and aiomysql's pool are built for applications whose database is up:
psycopg_pool connects in a background task, retries with backoff and hands the
caller a `PoolTimeout` after its full timeout, with the real reason only in a log
line. A monitor's job is the reason (`connect refused 127.0.0.1:5432`, at once), so
this pool connects in the caller's task and lets the error through.

Rules: at most `max_size` connections; a connection is reused only when its lease
ended without an exception and the lease did not ask to drop it; an idle connection
is checked (`alive`) before reuse when it has been idle for `check_after` seconds, so
a server restarted between two runs costs nothing; a broken one is closed and
replaced by a new connection in the same call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

C = TypeVar("C")


@dataclass
class Lease(Generic[C]):
    """One borrowed connection; set `reuse = False` to have it closed on return."""

    conn: C
    reuse: bool = True


class Pool(Generic[C]):
    """Connections made by `connect`, closed by `close`, checked by `alive`."""

    def __init__(
        self,
        connect: Callable[[float], Awaitable[C]],
        close: Callable[[C], Awaitable[None]],
        alive: Callable[[C], Awaitable[bool]],
        *,
        max_size: int = 4,
        check_after: float = 1.0,
    ) -> None:
        self._connect = connect
        self._close = close
        self._alive = alive
        self._slots = asyncio.Semaphore(max_size)
        self._check_after = check_after
        self._idle: list[tuple[C, float]] = []
        self._generation = 0  # bumped by aclose(): leases from before are not pooled again

    @contextlib.asynccontextmanager
    async def lease(self, connect_timeout: float) -> AsyncIterator[Lease[C]]:
        """Borrow a connection: an idle healthy one, else a new one (errors propagate)."""
        async with self._slots:
            generation = self._generation
            lease = Lease(await self._take(connect_timeout))
            try:
                yield lease
            except BaseException:
                # Its state is unknown after an error or a cancellation mid-query.
                lease.reuse = False
                raise
            finally:
                if lease.reuse and generation == self._generation:
                    self._idle.append((lease.conn, time.monotonic()))
                else:
                    await self._quietly_close(lease.conn)

    async def _take(self, connect_timeout: float) -> C:
        while self._idle:
            conn, since = self._idle.pop()  # the most recently used first: likely alive
            if time.monotonic() - since < self._check_after or await self._alive(conn):
                return conn
            await self._quietly_close(conn)
        return await self._connect(connect_timeout)

    async def aclose(self) -> None:
        """Close the idle connections; the ones in use are closed when returned."""
        self._generation += 1
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await self._quietly_close(conn)

    async def _quietly_close(self, conn: C) -> None:
        # Closing a connection the server already dropped may raise; it is gone either way.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._close(conn), 2.0)
