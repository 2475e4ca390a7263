"""The tasks that carry runs in this process, and stopping one so that the stop is not lost.

Why a cancel is sent more than once: on Python 3.11, `asyncio.wait_for` drops a cancellation that
lands in the same loop turn as its inner result (it returns the result instead; CPython gh-86296,
fixed in 3.12), and nats-py awaits every request through `wait_for`. A carrier spends most of its
time waiting for JetStream replies, so now and then a single `task.cancel()` vanished and the run
went on: a run cancelled by its client finished its 20-second model call anyway. So a stop is sent
again every `RESEND_S` until the carrier says it took it (`took`, first thing where it catches the
`CancelledError`), or it ended.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)
RESEND_S = 0.5


class Stop(enum.Enum):
    """Why a carrier was stopped: the handler of its `CancelledError` does different things."""

    CANCEL = "cancel"  # the client cancelled the run: record it cancelled, acknowledge the message
    LEASE_LOST = "lease_lost"  # another carrier holds the run: write nothing, leave the message


class Carriers:
    """Run id -> the task carrying it here, and why it was stopped, if it was."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task] = {}
        self._stopped: dict[str, Stop] = {}
        self._taken: set[str] = set()
        self._resenders: set[asyncio.Task] = set()

    def carry(self, run_id: str, task: asyncio.Task) -> None:
        self._tasks[run_id] = task

    def done(self, run_id: str) -> None:
        """The carrier is finished with the run (whatever happened): forget it."""
        self._tasks.pop(run_id, None)
        self._stopped.pop(run_id, None)
        self._taken.discard(run_id)

    def stopped(self, run_id: str) -> Stop | None:
        return self._stopped.get(run_id)

    def stop(self, run_id: str, why: Stop) -> bool:
        """Cancel the run's carrier, again until it takes the cancel. False when nobody carries it here."""
        task = self._tasks.get(run_id)
        if task is None:
            return False
        if run_id in self._stopped:
            return True  # already being stopped: the first reason stands
        self._stopped[run_id] = why
        task.cancel()
        resender = asyncio.create_task(self._until_taken(run_id, task))
        self._resenders.add(resender)
        resender.add_done_callback(self._resenders.discard)
        return True

    def took(self, run_id: str) -> Stop | None:
        """The carrier caught a `CancelledError`: why it was stopped (None: the process is shutting
        down). A stop it took is not sent again, and the task is no longer cancelling, so what it
        writes now (the run's ending) is not cut short."""
        why = self._stopped.get(run_id)
        task = self._tasks.get(run_id)
        if why is not None and task is not None:
            self._taken.add(run_id)
            while task.uncancel():
                pass
        return why

    async def _until_taken(self, run_id: str, task: asyncio.Task) -> None:
        while True:
            await asyncio.sleep(RESEND_S)
            if self._tasks.get(run_id) is not task or task.done() or run_id in self._taken:
                return
            log.info("run %s: its carrier missed the cancel; cancelling again", run_id)
            task.cancel()


async def cancel_all(tasks: Iterable[asyncio.Task]) -> None:
    """Cancel these tasks and wait for them, cancelling again any that missed it (see above). What
    they raised is retrieved and dropped, as `gather(..., return_exceptions=True)` does."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RESEND_S * 2)
    for task in tasks:
        if not task.cancelled():
            task.exception()
