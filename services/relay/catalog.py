"""The relay's view of the registry: every manifest with its definition, cached.

Chat completions resolve their `model` on every request, and listing the registry opens a KV
watch each time; so the relay keeps the listing in memory and drops it when the registry
announces a change, or when the registry's revision moved (an announcement lost during a reconnect:
`runtime.registry_revision`), and after MAX_AGE_S in any case.
Concurrent callers share one reload.
"""

from __future__ import annotations

import asyncio
import time

from ossabus.contracts import subjects
from ossabus.contracts.bus import ListManifestsRequest, ManifestList, ManifestListItem
from ossabus.runtime.bus import BusClient
from ossabus.runtime.registry_revision import RegistryRevision

MAX_AGE_S = 30.0


class Catalog:
    def __init__(self, bus: BusClient):
        self.bus = bus
        self._items: list[ManifestListItem] | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self.revision = RegistryRevision(bus.broker)

    def invalidate(self) -> None:
        self._items = None

    async def items(self) -> list[ManifestListItem]:
        if await self.revision.moved():
            self._items = None
        if self._items is not None and time.monotonic() - self._loaded_at < MAX_AGE_S:
            return self._items
        async with self._lock:
            if self._items is None or time.monotonic() - self._loaded_at >= MAX_AGE_S:
                listing = await self.bus.call(
                    subjects.REGISTRY_LIST, ListManifestsRequest(with_definitions=True), ManifestList
                )
                self._items, self._loaded_at = listing.data, time.monotonic()
            return self._items

    async def names(self, *kinds: str) -> set[str]:
        return {m.name for m in await self.items() if not kinds or m.kind in kinds}
