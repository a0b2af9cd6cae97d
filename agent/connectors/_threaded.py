"""Run a blocking embedded-database call in a thread, interrupted when its time is up.

SQLite and DuckDB have no server to enforce a statement timeout, and a thread cannot
be killed; both offer `connection.interrupt()`, callable from another thread, which
makes the running statement fail. The timer calls it when `timeout` passes, and so
does a cancellation of the awaiting task (the runner's hard timeout), so no query
keeps a worker thread busy after its run has been given up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Interrupted(Exception):
    """The call was interrupted because `timeout` passed."""


async def run_interruptible(
    work: Callable[[], T],
    interrupt: Callable[[], None],
    timeout: float,  # noqa: ASYNC109 - the thread is interrupted, not the await cancelled
) -> T:
    """`work()` in a worker thread; `interrupt()` after `timeout` seconds or on cancellation.

    When the timer fired and `work` failed, the failure becomes `Interrupted`, whatever
    the driver called it.
    """
    loop = asyncio.get_running_loop()
    fired = False

    def on_timer() -> None:
        nonlocal fired
        fired = True
        interrupt()

    timer = loop.call_later(timeout, on_timer)
    try:
        return await asyncio.to_thread(work)
    except asyncio.CancelledError:
        interrupt()
        raise
    except Exception as exc:
        if fired:
            raise Interrupted() from exc
        raise
    finally:
        timer.cancel()
