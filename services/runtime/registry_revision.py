"""Noticing registry writes whose announcement never arrived.

Caches of manifests (the executor's agents, the relay's catalog) are dropped when the registry
announces a change on `ossa.registry.changed.<name>`. An announcement can be lost (published while
NATS was restarting: seen as an empty JetStream acknowledgement under load), and a cache would then
serve an old agent until the process restarts. So caches also look, at most every `every_s`, at the
last sequence of the manifests bucket's stream, which moves with every write and delete: a cheap
JetStream call that needs nothing from the registry, and a lost announcement heals within seconds.
"""

from __future__ import annotations

import logging
import time

from faststream.nats import NatsBroker

from ossabus.contracts import subjects

log = logging.getLogger(__name__)
CHECK_EVERY_S = 2.0


class RegistryRevision:
    def __init__(self, broker: NatsBroker, every_s: float = CHECK_EVERY_S):
        self.broker, self.every_s = broker, every_s
        self.seen: int | None = None
        self.checked_at = float("-inf")

    async def moved(self) -> bool:
        """True when the registry was written since the last look (and on the first look, when
        nothing is known yet). At most one JetStream call per `every_s`; False when NATS is away."""
        if time.monotonic() - self.checked_at < self.every_s:
            return False
        self.checked_at = time.monotonic()
        try:
            info = await self.broker.connection.jetstream().stream_info(f"KV_{subjects.MANIFESTS_BUCKET}")
        except Exception as exc:  # the cache stays as it is; the next look will tell
            log.debug("could not read the registry's revision: %s", exc)
            return False
        revision = info.state.last_seq
        moved = revision != self.seen
        self.seen = revision
        return moved
