"""Run leases and fencing: one carrier writes a run, even when its message is delivered twice.

The work queue redelivers a message whose `in_progress` signal arrived late (a GC pause, a NATS
outage longer than the ack wait), so two carriers can hold the same run: two executors, or two
deliveries in one executor. The lease `lease.<run_id>` in the runs bucket settles it. It is taken with
compare-and-set and expires after the ack wait, so a crashed executor's runs are taken over once its
lease lapses. Checking it only at renewals was not enough: a carrier cut off from NATS for longer
than the ack wait came back and wrote its answer after another carrier had written one (seen: two
identical assistant messages). So every write a carrier makes is fenced: `Fence.hold()` renews the
lease with compare-and-set on the revision this carrier last wrote, and a carrier whose lease
another took raises `LeaseLost` before it writes anything. The fence of the task doing the work is
kept in a context variable, so the store fences writes without every caller passing it along.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from ossabus.contracts import subjects
from ossabus.contracts.ids import new_id
from ossabus.store import kv as kvs

T = TypeVar("T")
log = logging.getLogger(__name__)


class Lease(BaseModel):
    holder: str
    until: float


class LeaseLost(Exception):
    """Another carrier holds the run now: this one must stop without writing."""


def lease_key(run_id: str) -> str:
    return f"lease.{subjects.token(run_id)}"


class Fence:
    """One carrier's hold on one run's lease."""

    def __init__(self, kv: KeyValue, run_id: str, holder: str, ttl_s: float, revision: int):
        self.kv, self.run_id, self.holder, self.ttl_s = kv, run_id, holder, ttl_s
        self.key = lease_key(run_id)
        self.revision = revision
        self.lost = False
        self._lock = asyncio.Lock()

    def _mine(self) -> bytes:
        return Lease(holder=self.holder, until=time.time() + self.ttl_s).model_dump_json().encode()

    async def hold(self) -> None:
        """Renew the lease if this carrier still has it; raise `LeaseLost` when another took it.

        Compare-and-set on our own last revision: any write by anyone else in between fails it. A
        renewal whose reply was lost (NATS restarting) may have landed anyway, so a failed update
        re-reads the lease before concluding: only this carrier ever writes its holder id.
        """
        if self.lost:
            raise LeaseLost(self.run_id)
        async with self._lock:
            try:
                self.revision = await self.kv.update(self.key, self._mine(), last=self.revision)
                return
            except KeyWrongLastSequenceError:
                pass
            current = await kvs.read(self.kv, self.key, Lease)
            if current is None or current[0].holder != self.holder:
                self.lost = True
                raise LeaseLost(self.run_id)
            self.revision = await self.kv.update(self.key, self._mine(), last=current[1])

    async def release(self) -> None:
        if self.lost:
            return
        with contextlib.suppress(KeyWrongLastSequenceError):
            await self.kv.delete(self.key, last=self.revision)


class Leases:
    def __init__(self, kv: KeyValue, ttl_s: float):
        self.kv, self.ttl_s = kv, ttl_s
        self.grace_s = ttl_s / 2  # live carriers renew every ttl/3 (see the executor's renewal)
        self.last_conflict_until = 0.0

    def expires_in(self) -> float:
        """Seconds until the lease that made the last `acquire` fail runs out."""
        return max(0.0, self.last_conflict_until - time.time())

    async def acquire(self, run_id: str) -> Fence | None:
        """A new carrier's fence on the run, or None while another live carrier has it (see
        `expires_in`). Each carrier gets its own holder id, so a second delivery of a run to the
        executor that is still carrying it waits like any other.

        A lease that has run out is taken only after a second look, `grace_s` later, finds it
        unchanged. After a NATS outage every lease looks expired at once although their carriers
        are alive, with a model answer in hand and waiting to write it; they renew within moments of
        reconnecting, and taking their runs over would throw those answers away and ask again.
        """
        key = lease_key(run_id)
        holder = new_id("carrier")
        looked: int | None = None
        for _ in range(4):
            current = await kvs.read(self.kv, key, Lease)
            mine = Lease(holder=holder, until=time.time() + self.ttl_s).model_dump_json().encode()
            try:
                if current is None:
                    revision = await self.kv.create(key, mine)
                else:
                    lease, revision = current
                    if lease.until > time.time():
                        self.last_conflict_until = lease.until
                        return None
                    if looked != revision:
                        looked = revision
                        await asyncio.sleep(self.grace_s)
                        continue
                    revision = await self.kv.update(key, mine, last=revision)
            except KeyWrongLastSequenceError:
                continue
            return Fence(self.kv, run_id, holder, self.ttl_s, revision)
        self.last_conflict_until = time.time()
        return None


async def keep_lease(fence: Fence, every_s: float, lost: Callable[[], object]) -> None:
    """Renew the lease while its carrier waits (on the model, on a tool, on a step's run); when another
    carrier took it (this one stalled past its expiry), call `lost`, which stops this one at once.
    Writes check the fence themselves; this only stops a carrier that is not writing."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await fence.hold()
        except LeaseLost:
            log.warning("lost the lease of %s to another carrier; stopping it here", fence.run_id)
            lost()
            return
        except Exception:  # the bus is down: the next renewal will tell
            continue


_current: contextvars.ContextVar[Fence | None] = contextvars.ContextVar("ossabus_fence", default=None)


@contextlib.contextmanager
def fenced(fence: Fence | None) -> Iterator[None]:
    """Writes made by this task (and the tasks it starts) are made under `fence`."""
    token = _current.set(fence)
    try:
        yield
    finally:
        _current.reset(token)


def current_fence() -> Fence | None:
    return _current.get()


TRANSIENT = kvs.TRANSIENT
RETRY_MAX_DELAY_S = 0.5


async def fenced_write(write: Callable[[], Awaitable[T]]) -> T:
    """Make `write` under the current task's fence, if it has one.

    A fenced write outlives NATS outages: it is tried again until NATS answers, however long that
    takes (the run's own deadline bounds it), because giving up would throw away a model answer
    already paid for and make another carrier ask again. Whether it may still be made is decided
    afresh each time, by the fence. Unfenced writes (HTTP requests) fail at once instead: their
    caller is waiting and gets a 503.
    """
    fence = current_fence()
    if fence is None:
        return await write()
    delay = 0.1
    while True:
        try:
            await fence.hold()
            return await write()
        except TRANSIENT:
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY_S)
