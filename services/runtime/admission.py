"""Admitting work-queue messages to a bounded number of slots, shared by the executor (runs) and the
retrieval service (files).

A message waits for a free slot before its own task starts, and tells JetStream meanwhile that it is
held (`in_progress` every third of the ack wait): FastStream's concurrent pull subscriber buffers
fetched messages without saying so, which let the server redeliver them to another process while
they waited, and two processes carried one piece of work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig


def work_queue(
    broker: NatsBroker, subject: str, stream: str, durable: str, ack_wait_s: float, max_deliver: int, **config
):
    """The durable pull subscriber of a work queue, acknowledged by hand (MANUAL, on purpose: work is
    acked when it is done, and `in_progress` keeps it held meanwhile), one message per fetch."""
    return broker.subscriber(
        subject,
        stream=JStream(name=stream, declare=False),
        durable=durable,
        config=ConsumerConfig(ack_policy=JsAckPolicy.EXPLICIT, ack_wait=ack_wait_s, max_deliver=max_deliver, **config),
        pull_sub=PullSub(batch_size=1, timeout=5.0),
        ack_policy=AckPolicy.MANUAL,
    )


async def keep_in_progress(raw, every_s: float) -> None:
    """Tell JetStream the message's work goes on (until cancelled), so it is not redelivered meanwhile."""
    with contextlib.suppress(Exception):
        while True:
            await asyncio.sleep(every_s)
            await raw.in_progress()


async def admit(
    slots: asyncio.Semaphore,
    raw,
    ack_wait_s: float,
    carry: Callable[[], Awaitable[None]],
    running: set[asyncio.Task],
) -> None:
    """Wait for a slot (keeping `raw` held), then run `carry()` in a task of `running` that gives
    the slot back when it ends."""
    while True:
        try:
            await asyncio.wait_for(slots.acquire(), timeout=ack_wait_s / 3)
            break
        except TimeoutError:
            await raw.in_progress()

    async def carried() -> None:
        try:
            await carry()
        finally:
            slots.release()

    task = asyncio.create_task(carried())
    running.add(task)
    task.add_done_callback(running.discard)
