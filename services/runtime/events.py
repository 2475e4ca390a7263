"""Publishing a run's events on `ossa.events.<thread>.<run>.<event>` in OpenAI's names and shapes.

State changes are published with a JetStream acknowledgement; token deltas are published without
waiting for one (same connection, so order is kept) because an ack per token would cap streaming
at the bus round-trip rate.

nats-py writes to the socket from a separate flusher task. When the model's tokens arrive in a
burst, the loop that publishes them never suspends, the flusher never runs, and every delta leaves
together at the end (seen: first token 25 ms late with an instant upstream). Yielding once after
each fire-and-forget publish lets the flusher write it at once.

Text and reasoning deltas are coalesced (`runtime.coalesce`): the first after a quiet moment goes
at once, the ones right behind it share a message. Every other event of the run sends what is held
first, so readers see the same order; the deltas held for a run are shared by every `RunEvents` of
it in this process (a cancellation publishes its ending through a new one).

State changes published by a run's carrier go through its fence (`store.leases`): retried through
NATS outages, never published by a carrier that lost the run.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

import orjson
from nats.aio.client import Client
from pydantic import BaseModel

from ossabus.contracts import subjects
from ossabus.contracts.bus import RunEvent
from ossabus.runtime.coalesce import Coalescer
from ossabus.store.leases import TRANSIENT, current_fence, fenced_write

REASONING_DELTA = "ossabus.reasoning.delta"  # not an Assistants event: the Assistants stream skips it
DELEGATE_DELTA = "ossabus.delegate.delta"  # a delegate's answer so far, on its parent's subjects
FIRE_AND_FORGET = ("thread.message.delta", "thread.run.step.delta", REASONING_DELTA, DELEGATE_DELTA)
COALESCED = ("thread.message.delta", REASONING_DELTA)
_HELD: weakref.WeakValueDictionary[str, Coalescer] = weakref.WeakValueDictionary()
# A run ends once; the message id makes JetStream drop a second copy of its ending (a publish tried
# again after a lost acknowledgement), on top of the fence that stops a second carrier.
ANNOUNCE_PATIENCE_S = 600  # an ending is retried through NATS outages this long (a redelivery announces it later)
ONCE_PER_RUN = tuple(
    f"thread.run.{status}" for status in ("completed", "failed", "cancelled", "expired", "incomplete")
) + tuple(f"workflow.run.{status}" for status in ("completed", "failed", "cancelled"))


def _text_delta(data: dict[str, Any]) -> str | None:
    """The text of a plain `thread.message.delta` (one text part, no annotations), else None."""
    parts = (data.get("delta") or {}).get("content") or []
    if len(parts) != 1 or parts[0].get("type") != "text" or parts[0].get("index") != 0:
        return None
    text = parts[0].get("text") or {}
    return text.get("value") if not text.get("annotations") and isinstance(text.get("value"), str) else None


def merged_deltas(items: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Consecutive deltas of the same message (or reasoning) as one; anything else as it was."""
    out: list[tuple[str, dict[str, Any]]] = []
    for event, data in items:
        if out and out[-1][0] == event and out[-1][1].get("id") == data.get("id"):
            last = out[-1][1]
            if event == REASONING_DELTA and isinstance(data.get("delta"), str):
                out[-1] = (event, {**last, "delta": last["delta"] + data["delta"]})
                continue
            before, after = _text_delta(last), _text_delta(data)
            if event == "thread.message.delta" and before is not None and after is not None:
                part = {"index": 0, "type": "text", "text": {"value": before + after, "annotations": []}}
                out[-1] = (event, {**last, "delta": {**last["delta"], "content": [part]}})
                continue
        out.append((event, data))
    return out


class RunEvents:
    def __init__(self, nc: Client, thread_id: str, run_id: str):
        self.nc = nc
        self.js = nc.jetstream()
        self.thread_id, self.run_id = thread_id, run_id
        held = _HELD.get(run_id)
        if held is None:
            held = _HELD[run_id] = Coalescer(self._send_deltas)
        self.held = held

    async def _send_deltas(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        fence = current_fence()
        if fence is not None and fence.lost:
            return  # another carrier streams this run now
        for event, data in merged_deltas(items):
            # a RunEvent's fields serialized directly, without building the model: this runs per delta
            body = {
                "event": event,
                "thread_id": self.thread_id,
                "run_id": self.run_id,
                "data": data,
                "at": int(time.time()),
            }
            data_bytes = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
            await self.nc.publish(subjects.run_event(self.thread_id, self.run_id, event), data_bytes)
        await asyncio.sleep(0)  # let nats-py's flusher write it now (see the module docstring)

    async def emit(self, event: str, data: BaseModel | dict[str, Any] | None) -> None:
        if event in COALESCED and isinstance(data, dict):
            fence = current_fence()
            if fence is None or not fence.lost:
                await self.held.add((event, data))
            return
        await self.held.flush()
        payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
        body = RunEvent(event=event, thread_id=self.thread_id, run_id=self.run_id, data=payload)
        subject = subjects.run_event(self.thread_id, self.run_id, event)
        fence = current_fence()
        if event in FIRE_AND_FORGET:
            if fence is not None and fence.lost:
                return  # another carrier streams this run now
            await self.nc.publish(subject, body.model_dump_json().encode())
            await asyncio.sleep(0)  # let nats-py's flusher write it now (see the module docstring)
            return
        data = body.model_dump_json().encode()
        if event in ONCE_PER_RUN and fence is not None:
            # The run's ending is stored already: it must be announced even if this carrier loses the
            # lease now (a lost renewal acknowledgement, a cluster electing a leader), or nobody may:
            # a redelivery that finds the run ended is not guaranteed (deliveries are bounded).
            # The message id makes any second copy a no-op, so no fence is needed, and the publish
            # is shielded from the carrier being stopped half-way.
            await asyncio.shield(self._announce(subject, data, {"Nats-Msg-Id": f"{self.run_id}.{event}"}))
            return
        headers = {"Nats-Msg-Id": f"{self.run_id}.{event}"} if event in ONCE_PER_RUN else None
        await fenced_write(lambda: self.js.publish(subject, data, timeout=5, headers=headers))

    async def _announce(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        delay = 0.1
        deadline = asyncio.get_running_loop().time() + ANNOUNCE_PATIENCE_S
        while True:
            try:
                await self.js.publish(subject, data, timeout=5, headers=headers)
                return
            except TRANSIENT:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
