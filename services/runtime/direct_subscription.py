"""Request handlers on a plain nats-py subscription, for the one per-request hot path (`ossa.chat.*`).

Why not FastStream there: FastStream hands a handler its `NatsMessage` as a context field, and
fast_depends resolves context fields in an anyio task group with the resolver run in a worker
thread: a thread hop and a task group per message, then three middlewares. For a chat completion,
one message in and one out, py-spy put that at a sixth of the executor's CPU per request, and the
hop sits between the request and its first token. Every other subscriber stays on FastStream (its
acknowledgement policies, its AsyncAPI document; see contracts/asyncapi.py for how these are listed).

What FastStream gave that this keeps: at most `max_workers` handlers at once (the rest wait in the
subscription's queue), the W3C trace context of the headers as the parent of a CONSUMER span named
as FastStream names its own, an error reply instead of silence when a handler fails, and on stop a
drain that lets running handlers finish (within a bound) before the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from opentelemetry import trace

from ossabus.runtime import tracing
from ossabus.runtime.carriers import cancel_all

log = logging.getLogger(__name__)
FAILED = b'{"ok":false,"error":{"code":"server_error","message":"the request failed inside ossabus","param":null}}'


@dataclass(frozen=True)
class DirectHandler:
    subject: str
    queue: str
    handle: Callable[[Msg], Awaitable[bytes | None]]  # the reply, or None when it answers otherwise
    max_workers: int


class DirectSubscription:
    def __init__(self, nc: Client, handler: DirectHandler) -> None:
        self.nc, self.handler = nc, handler
        self._slots = asyncio.Semaphore(handler.max_workers)
        self._running: set[asyncio.Task] = set()
        self._subscription = None

    async def start(self) -> None:
        self._subscription = await self.nc.subscribe(self.handler.subject, queue=self.handler.queue, cb=self._received)

    async def _received(self, msg: Msg) -> None:
        # nats-py awaits this callback before it delivers the next message: waiting for a slot here
        # keeps the rest in the subscription's queue, as FastStream's `max_workers` does
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(msg))
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        self._slots.release()

    async def _handle(self, msg: Msg) -> None:
        with _consumer_span(msg):
            try:
                reply = await self.handler.handle(msg)
            except Exception:
                log.exception("%s: the handler failed", msg.subject)
                reply = FAILED
            if reply is not None and msg.reply:
                with contextlib.suppress(Exception):  # the caller's timeout tells it; nothing to add here
                    await self.nc.publish(msg.reply, reply)

    async def stop(self, within_s: float) -> None:
        """Take no more messages; let the running handlers finish for up to `within_s`, then cancel them."""
        if self._subscription is not None:
            with contextlib.suppress(Exception):  # the connection may be down: nothing arrives then either
                await self._subscription.unsubscribe()
        if self._running:
            await asyncio.wait(set(self._running), timeout=within_s)
        await cancel_all(set(self._running))


@contextlib.contextmanager
def _consumer_span(msg: Msg) -> Iterator[None]:
    if not tracing.enabled():
        yield
        return
    parent = tracing.context_from(msg.headers)
    attributes = {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.destination.name": msg.subject,
    }
    with tracing.tracer().start_as_current_span(
        f"{msg.subject} process", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ):
        yield
