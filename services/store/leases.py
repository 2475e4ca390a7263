"""Run leases: at most one executor carries a run at a time, even when a message is delivered twice.

The work queue redelivers a message whose `in_progress` signal arrived late (a GC pause, a network
blip), so two executors can hold the same run. The lease `lease.<run_id>` in the runs bucket settles
it: taken with compare-and-set, renewed with every `in_progress`, and expiring after the ack wait,
so a crashed executor's runs are taken over once its lease lapses.
"""

from __future__ import annotations

import contextlib
import time

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from ossabus.contracts import subjects
from ossabus.store import kv as kvs


class Lease(BaseModel):
    holder: str
    until: float


def lease_key(run_id: str) -> str:
    return f"lease.{subjects.token(run_id)}"


class Leases:
    def __init__(self, kv: KeyValue, holder: str, ttl_s: float):
        self.kv, self.holder, self.ttl_s = kv, holder, ttl_s
        self.last_conflict_until = 0.0

    def expires_in(self) -> float:
        """Seconds until the lease that made the last `acquire` fail runs out."""
        return max(0.0, self.last_conflict_until - time.time())

    async def acquire(self, run_id: str) -> bool:
        """Take (or renew) the lease; False while another live holder has it (see `expires_in`)."""
        key = lease_key(run_id)
        mine = Lease(holder=self.holder, until=time.time() + self.ttl_s).model_dump_json().encode()
        for _ in range(3):
            current = await kvs.read(self.kv, key, Lease)
            try:
                if current is None:
                    await self.kv.create(key, mine)
                    return True
                lease, revision = current
                if lease.holder != self.holder and lease.until > time.time():
                    self.last_conflict_until = lease.until
                    return False
                await self.kv.update(key, mine, last=revision)
                return True
            except KeyWrongLastSequenceError:
                continue
        return False

    async def release(self, run_id: str) -> None:
        current = await kvs.read(self.kv, lease_key(run_id), Lease)
        if current is not None and current[0].holder == self.holder:
            with contextlib.suppress(KeyWrongLastSequenceError):
                await self.kv.delete(lease_key(run_id), last=current[1])
