"""Token deltas gathered into fewer bus messages, without delaying the first one.

A model streams tokens in bursts (an instant upstream sends fifty in a millisecond; a real one a
token every 10-50 ms, with bursts when the network batches them). Each delta as its own message
costs a publish, a JSON encoding and, for a run, a stored JetStream message, and the relay pays
again per message. So: a delta that comes after a quiet moment (nothing sent for `window_s`) goes
out at once, which keeps time to first token where it was, and deltas that follow within the
window are held and sent together when the window ends or `max_items` are waiting. A reader never
waits more than `window_s` longer for any token.

`OSSABUS_STREAM_COALESCE_MS` (default 5; 0 sends every delta alone) and
`OSSABUS_STREAM_COALESCE_MAX` (default 32 deltas per message) tune it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
WINDOW_ENV, MAX_ENV = "OSSABUS_STREAM_COALESCE_MS", "OSSABUS_STREAM_COALESCE_MAX"
DEFAULT_WINDOW_MS, DEFAULT_MAX = 5.0, 32
Item = TypeVar("Item")


def _setting(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        return default
    return value if value >= 0 else default


def window_s() -> float:
    return _setting(WINDOW_ENV, DEFAULT_WINDOW_MS) / 1000


def max_items() -> int:
    return max(1, int(_setting(MAX_ENV, DEFAULT_MAX)))


class Coalescer(Generic[Item]):
    """Holds items for `send`, which gets a non-empty list and makes one message of it.

    Order is kept: whoever sends next takes everything pending first, so a caller that must send
    something else (a state change) calls `flush()` before it."""

    def __init__(self, send: Callable[[list[Item]], Awaitable[None]], window: float | None = None, limit: int = 0):
        self.send = send
        self.window = window_s() if window is None else window
        self.limit = limit or max_items()
        self.pending: list[Item] = []
        self.last_sent = float("-inf")
        self.timer: asyncio.TimerHandle | None = None
        self.flushing: set[asyncio.Task] = set()

    async def add(self, item: Item) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self.pending and now - self.last_sent >= self.window:
            self.last_sent = now
            await self.send([item])
            return
        self.pending.append(item)
        if len(self.pending) >= self.limit:
            await self.flush()
        elif self.timer is None:
            self.timer = loop.call_later(max(0.0, self.last_sent + self.window - now), self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        task = asyncio.get_running_loop().create_task(self.flush())
        self.flushing.add(task)
        task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task) -> None:
        self.flushing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not send held deltas: %s", task.exception())

    async def flush(self) -> None:
        """Send what is held now (nothing when nothing is)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.pending:
            return
        items, self.pending = self.pending, []
        self.last_sent = asyncio.get_running_loop().time()
        await self.send(items)

    def discard(self) -> None:
        """Forget what is held (the stream is abandoned)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pending = []
