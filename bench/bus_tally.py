"""Counting what a workload costs on the bus: JetStream round trips, and plain messages.

A subscription to `>` (as ossabus's own user, which may read everything) sees every message the
services exchange. A message with a reply subject on a JetStream subject is a round trip its
sender waited for: a JetStream API call (`$JS.API.*`: a KV read is a `DIRECT.GET`, a fetch from the
work queue a `MSG.NEXT`), a publish into a stream that asks for the acknowledgement (a KV write
on `$KV.*`, an event on `ossa.events.*`), or a synchronous message ack (`$JS.ACK.*`). Messages
without a reply are counted apart, and so are consumers' deliveries (a stored message delivered
on its own subject with a `$JS.ACK.*` reply): nobody waits for those.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import nats

STREAM_PREFIXES = ("$KV.", "$O.", "ossa.events.", "ossa.tasks.", "ossa.usage.", "ossa.workflows.", "ossa.telemetry.")


def kind_of(subject: str, reply: str) -> str | None:
    """The round trip a message is, or None when nobody waits for it."""
    if subject.startswith("$JS.API."):
        parts = subject.split(".")
        if parts[2] == "DIRECT":
            return "JetStream read (DIRECT.GET)"
        if parts[2] == "CONSUMER" and parts[3] == "MSG":
            return "work-queue fetch (MSG.NEXT)"
        return f"JetStream API ({'.'.join(parts[2:4])})"
    if not reply or reply.startswith("$JS.ACK."):
        return None  # nobody waits for it, or a consumer's delivery (its ack, if synchronous, counts)
    if subject.startswith("$JS.ACK."):
        return "acknowledgement, waited for"
    if subject.startswith("$KV."):
        return "KV write, acknowledged"
    if subject.startswith("$O."):
        return "object store write, acknowledged"
    if subject.startswith(STREAM_PREFIXES):
        return "stream publish, acknowledged"
    return None


def place_of(subject: str) -> str:
    """`$KV.ossa_runs` of `$KV.ossa_runs.thread_x.run_y`; the API call and its stream for `$JS.API.*`."""
    parts = subject.split(".")
    if subject.startswith("$KV.") or subject.startswith("$O."):
        return ".".join(parts[:2])
    if subject.startswith("$JS.API.DIRECT.GET."):
        return ".".join(parts[:5])
    if subject.startswith("$JS.API."):
        return ".".join(parts[2:5]) if parts[2] in ("STREAM", "CONSUMER") else ".".join(parts[2:4])
    return ".".join(parts[:2])


class BusTally:
    def __init__(self) -> None:
        self.round_trips: Counter[str] = Counter()
        self.where: Counter[str] = Counter()  # round trips by bucket / stream, for finding the costly ones
        self.plain = 0
        self.nc = None

    async def start(self, nats_url: str) -> None:
        self.nc = await nats.connect(nats_url)

        async def seen(msg) -> None:
            if msg.subject.startswith("_INBOX"):
                return
            kind = kind_of(msg.subject, msg.reply)
            if kind is None:
                self.plain += 1
            else:
                self.round_trips[kind] += 1
                self.where[place_of(msg.subject)] += 1

        await self.nc.subscribe(">", cb=seen, pending_msgs_limit=1_000_000, pending_bytes_limit=1 << 30)
        await self.nc.flush()

    def reset(self) -> None:
        self.round_trips.clear()
        self.where.clear()
        self.plain = 0

    async def settle(self) -> None:
        """Wait until the messages published so far have reached the tally."""
        assert self.nc is not None
        await self.nc.flush()
        await asyncio.sleep(0.5)

    async def stop(self) -> None:
        if self.nc is not None:
            await self.nc.close()

    def report(self, runs: int) -> list[str]:
        total = sum(self.round_trips.values())
        lines = [f"  {kind:<40}{count / runs:>8.1f}" for kind, count in self.round_trips.most_common()]
        lines.append(f"  {'JetStream round trips per run':<40}{total / runs:>8.1f}")
        lines.append(f"  {'messages nobody waits for, per run':<40}{self.plain / runs:>8.1f}")
        lines.append("  where, per run:")
        lines += [f"    {place:<50}{count / runs:>8.1f}" for place, count in self.where.most_common(14)]
        return lines
