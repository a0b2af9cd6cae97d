"""The durable notification outbox: rows first, then a sender claims and delivers them.

Every notice is a row in `notifications` before anything is sent. The sender takes the
oldest pending notice of each target, marks it `sending`, delivers it and records the
outcome: `sent` (with the notifier's reference, so later notices can update the same
message), a retry with exponential back-off and jitter (or exactly the receiver's
`Retry-After`), or `dead` for a permanent error. Notices caught mid-send by a crash go
back to pending at start: delivery is at least once in that narrow window, exactly
once otherwise. Reports' emails are rows here too (`ReportNotice`, event `report`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from agent import store_incidents as sql
from agent.errors import NotifyError
from agent.notices import AnyNotice, Delivery, ReportNotice
from agent.results import utcnow
from agent.store import Store

log = logging.getLogger(__name__)

# A round that found nothing due never spins: it waits at least this long.
_MIN_WAIT_S = 0.05

Deliver = Callable[[AnyNotice, dict[str, str] | None], Awaitable[Delivery]]


class Outbox:
    """Delivers pending notices; `wake()` after writing new ones."""

    def __init__(
        self,
        store: Store,
        deliver: Deliver,
        *,
        base_delay: float = 2.0,
        max_delay: float = 300.0,
        max_attempts: int = 50,
        poll_every: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._deliver = deliver
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._max_attempts = max_attempts
        self._poll_every = poll_every
        self._clock = clock
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0

    async def start(self) -> None:
        """Requeue notices interrupted by a crash, then start the sender task."""
        recovered = await self._store.run(sql.recover_interrupted, write=True)
        if recovered:
            log.warning(
                "outbox: %d notices were being sent when the agent stopped; sending again",
                recovered,
            )
        self._task = asyncio.create_task(self._loop(), name="opsagent-outbox")

    def wake(self) -> None:
        """New notices were written: look now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop the sender; unsent notices stay pending in the store for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            # Cleared before the round, not after: a notice written while this round
            # sends wakes the next round instead of waiting for the poll.
            self._wake.clear()
            sent = self.sent
            try:
                await self.run_once()
            except Exception:  # the store or a bug; keep the sender alive
                log.exception("outbox: sending round failed")
            if self.sent > sent:
                # A round takes one notice per target: the next one of a target that
                # just delivered may be queued behind it. Look again now (a round that
                # only failed waits, so a failing target cannot spin).
                continue
            sleep = await self._until_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), sleep)

    async def _until_due(self) -> float:
        """Seconds to sleep: until the next retry is due, at most `poll_every`.

        New notices wake the sender, so only retries need a timer: an idle agent no
        longer queries the store every second (that poll was most of its idle CPU).
        """
        try:
            at = await self._store.run(sql.next_due)
        except Exception:  # the store; the next round logs it if it persists
            return _MIN_WAIT_S
        if at is None:
            return self._poll_every
        seconds = (at - self._clock()).total_seconds()
        return min(self._poll_every, max(_MIN_WAIT_S, seconds))

    async def run_once(self) -> int:
        """Deliver every notice that is due now (one per target); returns how many were tried."""
        now = self._clock()
        rows = await self._store.run(lambda con: sql.due(con, now), write=True)
        if not rows:
            return 0
        await self._store.run(lambda con: sql.mark_sending(con, [r.id for r in rows]), write=True)
        await asyncio.gather(*(self._send(row) for row in rows))
        return len(rows)

    async def _send(self, row: sql.OutboxRow) -> None:
        previous = (
            None  # a report's email stands alone: no earlier message to update
            if isinstance(row.notice, ReportNotice)
            else await self._store.run(lambda con: sql.last_ref(con, row.incident_id, row.target))
        )
        try:
            delivery = await self._deliver(row.notice, previous)
        except NotifyError as exc:
            await self._failed(row, str(exc), permanent=exc.permanent, retry_after=exc.retry_after)
            return
        except Exception as exc:  # a notifier bug: retry like a transient error, and say so
            log.exception("outbox: notifier for %s raised", row.target)
            await self._failed(
                row, f"{type(exc).__name__}: {exc}", permanent=False, retry_after=None
            )
            return
        now = self._clock()
        await self._store.run(lambda con: sql.mark_sent(con, row.id, delivery.ref, now), write=True)
        self.sent += 1
        if isinstance(row.notice, ReportNotice):
            what = f"report {row.notice.name} #{row.notice.report_id}"
        else:
            what = f"{row.notice.event.value} incident {row.incident_id}"
        log.info("notice %d sent: %s to %s", row.id, what, row.target)

    async def _failed(
        self, row: sql.OutboxRow, error: str, *, permanent: bool, retry_after: float | None
    ) -> None:
        self.failed += 1
        attempts = row.attempts + 1
        if permanent or attempts >= self._max_attempts:
            why = "permanent error" if permanent else f"gave up after {attempts} attempts"
            log.error("notice %d to %s is dead (%s): %s", row.id, row.target, why, error)
            await self._store.run(lambda con: sql.mark_dead(con, row.id, error), write=True)
            return
        delay = self.backoff(attempts, retry_after)
        next_at = self._clock() + timedelta(seconds=delay)
        log.warning(
            "notice %d to %s failed (attempt %d), retrying in %.1fs: %s",
            row.id,
            row.target,
            attempts,
            delay,
            error,
        )
        await self._store.run(lambda con: sql.mark_retry(con, row.id, error, next_at), write=True)

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt `attempts + 1`: the receiver's word, else exponential with jitter."""
        if retry_after is not None:
            return max(0.0, retry_after)
        ceiling = min(self._max_delay, self._base_delay * 2 ** (attempts - 1))
        jittered: float = ceiling * self._rng.uniform(0.5, 1.0)
        return jittered
