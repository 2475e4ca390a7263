"""Manifests in a JetStream key-value bucket: one key per name, each write a new version.

Versions are numbered per name (1, 2, 3, ...) inside the stored record, because KV revisions are
stream-wide sequence numbers. Writes use compare-and-set on the last revision, so two writers
racing on one name cannot both win silently; the loser retries against the new latest version.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from ossabus.contracts.bus import ManifestRecord
from ossabus.runtime.bus import BusFailure
from ossabus.store.kv import decode
from ossabus.store.kv import history as kv_history
from ossabus.store.kv import scan as kv_scan

CAS_ATTEMPTS = 5


class ManifestStore:
    def __init__(self, kv: KeyValue):
        self.kv = kv

    async def _latest_entry(self, name: str) -> KeyValue.Entry | None:
        try:
            entry = await self.kv.get(name)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        return entry if entry.value else None

    async def latest(self, name: str) -> ManifestRecord | None:
        entry = await self._latest_entry(name)
        return decode(self.kv, name, entry.value, ManifestRecord) if entry else None

    async def get(self, name: str, version: int | None = None) -> ManifestRecord | None:
        """The latest version, or version `version` while it is within the kept history."""
        if version is None:
            return await self.latest(name)
        for record in await self.history(name):
            if record.version == version:
                return record
        return None

    async def history(self, name: str) -> list[ManifestRecord]:
        return await kv_history(self.kv, name, ManifestRecord)

    async def names(self) -> list[str]:
        return [record.name for record in await self.list()]

    async def list(self) -> list[ManifestRecord]:
        """The latest version of every manifest, in one pass over the bucket."""
        return await kv_scan(self.kv, ">", ManifestRecord)

    async def put(
        self, build: Callable[[int, int], ManifestRecord], name: str, *, create_only: bool = False
    ) -> tuple[ManifestRecord, bool, bool]:
        """Write a new version built by `build(version, created_at)`; return (record, created, changed).

        Identical content (same text from the same source) is not a new version, so restarting
        with unchanged manifest files leaves the registry untouched.
        """
        for _ in range(CAS_ATTEMPTS):
            entry = await self._latest_entry(name)
            now = int(time.time())
            current = decode(self.kv, name, entry.value, ManifestRecord) if entry is not None else None
            if entry is not None and current is None:  # a corrupt record: overwrite it as the next version
                previous = await self.history(name)
                record = build(max((r.version for r in previous), default=0) + 1, now)
                try:
                    await self.kv.update(name, record.model_dump_json().encode(), last=entry.revision)
                except KeyWrongLastSequenceError:
                    continue
                return record, True, True
            if entry is not None and current is not None:
                if create_only:
                    raise BusFailure.of(
                        "conflict",
                        f"manifest {name!r} already exists; use PUT to replace it",
                        "metadata.name",
                    )
                record = build(current.version + 1, current.created_at)
                if record.raw == current.raw and record.source == current.source:
                    return current, False, False
                try:
                    await self.kv.update(name, record.model_dump_json().encode(), last=entry.revision)
                except KeyWrongLastSequenceError:
                    continue
                return record, False, True
            previous = await self.history(name)  # a deleted name keeps counting from its last version
            record = build(max((r.version for r in previous), default=0) + 1, now)
            try:
                await self.kv.create(name, record.model_dump_json().encode())
            except KeyWrongLastSequenceError:
                continue
            return record, True, True
        raise BusFailure.of("conflict", f"manifest {name!r} is being changed concurrently; try again")

    async def delete(self, name: str) -> bool:
        if await self._latest_entry(name) is None:
            return False
        await self.kv.delete(name)
        return True
