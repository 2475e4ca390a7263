"""The chunks of every streamed chat completion a relay waits for, on one wildcard subscription.

Why not a subscription per stream: each cost a SUB and an UNSUB on top of the request (writes to
nats-server, which updates its interest graph twice), and reading it with `next_msg` started a
`wait_for` task per chunk. Here one `<inbox>.*` subscription per connection, made on first use,
routes each message by its last token to its stream's queue; a stream nobody reads any more (its
client left) is forgotten when it is closed or collected, and its late chunks are dropped.
"""

from __future__ import annotations

import asyncio
import secrets
import weakref
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg


class ChatInbox:
    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.prefix = nc.new_inbox()
        self._queues: dict[str, asyncio.Queue[Msg]] = {}
        self._subscribing = asyncio.Lock()
        self._subscription = None

    async def open(self) -> ChatStream:
        if self._subscription is None:
            async with self._subscribing:
                if self._subscription is None:
                    self._subscription = await self.nc.subscribe(f"{self.prefix}.*", cb=self._route)
        token = secrets.token_hex(8)
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._queues[token] = queue
        return ChatStream(f"{self.prefix}.{token}", queue, self._queues, token)

    async def _route(self, msg: Msg) -> None:
        queue = self._queues.get(msg.subject[len(self.prefix) + 1 :])
        if queue is not None:
            queue.put_nowait(msg)

    @property
    def open_streams(self) -> int:
        return len(self._queues)


class Abandoned(Exception):
    """The stream's reader gave up on it (its client left) while it waited for the next message."""


_ABANDONED: Any = object()  # queued after the messages, so a reader takes what came first


class ChatStream:
    """One stream's reply subject and its messages, in the order they were published."""

    def __init__(self, subject: str, queue: asyncio.Queue[Msg], queues: dict, token: str) -> None:
        self.subject, self._queue = subject, queue
        self._forget = weakref.finalize(self, queues.pop, token, None)  # also when dropped unclosed

    async def next(self, timeout_s: float) -> Msg:
        """The next message; TimeoutError when none came within `timeout_s`, Abandoned after `abandon()`."""
        if self._queue.empty():
            async with asyncio.timeout(timeout_s):
                message = await self._queue.get()
        else:  # a burst already here: no timer to arm
            message = self._queue.get_nowait()
        if message is _ABANDONED:
            raise Abandoned
        return message

    def abandon(self) -> None:
        """End the wait of whoever reads this stream (a call from outside the reading task)."""
        self._queue.put_nowait(_ABANDONED)

    def close(self) -> None:
        self._forget()


_inboxes: weakref.WeakKeyDictionary[Client, ChatInbox] = weakref.WeakKeyDictionary()


def inbox_of(nc: Client) -> ChatInbox:
    """The connection's chat inbox (one per connection: its subscription lives on that connection)."""
    inbox = _inboxes.get(nc)
    if inbox is None:
        inbox = _inboxes[nc] = ChatInbox(nc)
    return inbox
