"""Concurrency slots: at most `maxConcurrentRequests` runs of an agent at once, across every executor.

The slots of an agent are one KV entry, `slots.<agent>` in the runs bucket: the runs holding one,
each with the time its hold lapses. Taking a slot is a compare-and-set on that entry, so two
executors cannot both take the last one. A hold lapses with the run's own deadline, and a run that
is carried again (after its executor died) takes its own slot back rather than a second one, so
a dead executor leaks nothing for longer than its runs would have lived.
"""

from __future__ import annotations

import time

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from ossabus.contracts import subjects
from ossabus.store import kv as kvs


class SlotHolders(BaseModel):
    runs: dict[str, float] = Field(default_factory=dict, description="run id -> unix time its hold lapses")

    def live(self, now: float) -> dict[str, float]:
        return {run: until for run, until in self.runs.items() if until > now}


class Slots:
    def __init__(self, kv: KeyValue):
        self.kv = kv

    async def acquire(self, agent: str, run_id: str, limit: int, until: float) -> bool:
        """Hold a slot for `run_id` until `until`; False when all `limit` are held by other runs."""
        key = subjects.concurrency_key(agent)
        for _ in range(kvs.CAS_ATTEMPTS):
            current = await kvs.read(self.kv, key, SlotHolders)
            now = time.time()
            holders = current[0].live(now) if current else {}
            if run_id not in holders and len(holders) >= limit:
                return False
            holders[run_id] = until
            value = SlotHolders(runs=holders).model_dump_json().encode()
            try:
                if current is None:
                    await self.kv.create(key, value)
                else:
                    await self.kv.update(key, value, last=current[1])
                return True
            except Exception as exc:
                if not _is_conflict(exc):
                    raise
        raise kvs.Conflict(key)

    async def release(self, agent: str, run_id: str) -> None:
        key = subjects.concurrency_key(agent)

        def without(holders: SlotHolders) -> SlotHolders | None:
            if run_id not in holders.runs:
                return None
            holders.runs.pop(run_id)
            return holders

        await kvs.update(self.kv, key, SlotHolders, without)

    async def held(self, agent: str) -> int:
        current = await kvs.read(self.kv, subjects.concurrency_key(agent), SlotHolders)
        return len(current[0].live(time.time())) if current else 0


def _is_conflict(exc: Exception) -> bool:
    """A concurrent writer got there first (wrong last sequence, or the key was created meanwhile)."""
    return isinstance(exc, KeyWrongLastSequenceError) or "wrong last sequence" in str(exc).lower()
