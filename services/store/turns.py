"""The ids of a run's model turns, fixed by the first carrier that starts the turn.

A turn writes at most one assistant message, its message-creation step and one tool-calls step. When a
second carrier redoes a turn (the first was cut off mid-stream, or lost its lease during a NATS
outage) it must write the same records, not new ones beside them: then a stale carrier's late write
lands on the record the new carrier owns and replaces it, and the thread can never show two answers
for one turn. The ids are still ordinary creation-ordered ids (`contracts.ids`), so listings keep
their order; they are simply drawn once per turn and stored under `turn.<thread>.<run>.<n>`.
"""

from __future__ import annotations

from nats.js.kv import KeyValue
from pydantic import BaseModel

from ossabus.contracts import subjects
from ossabus.contracts.ids import new_id
from ossabus.store import kv as kvs
from ossabus.store.leases import fenced_write


class TurnIds(BaseModel):
    message_id: str
    message_step_id: str
    tool_step_id: str


async def turn_ids(runs_kv: KeyValue, thread_id: str, run_id: str, turn: int) -> TurnIds:
    """The ids of turn `turn` (1-based) of the run: those stored, or fresh ones stored now."""
    key = subjects.turn_key(thread_id, run_id, turn)

    async def claim() -> TurnIds:
        found = await kvs.read(runs_kv, key, TurnIds)
        if found is not None:
            return found[0]
        fresh = TurnIds(message_id=new_id("msg"), message_step_id=new_id("step"), tool_step_id=new_id("step"))
        try:
            await kvs.create(runs_kv, key, fresh)
            return fresh
        except kvs.Conflict:  # another carrier drew them first: use theirs
            found = await kvs.read(runs_kv, key, TurnIds)
            assert found is not None
            return found[0]

    return await fenced_write(claim)


async def forget_turns(runs_kv: KeyValue, thread_id: str) -> None:
    """Drop the turn records of a deleted thread's runs."""
    for key, _ in await kvs.scan_items(runs_kv, subjects.thread_turns(thread_id), TurnIds):
        await kvs.delete(runs_kv, key)
