"""The agents runs need, from the registry, cached until the registry announces a change (or its
revision moves, in case an announcement was lost: `runtime.registry_revision`)."""

from __future__ import annotations

from ossabus.contracts import subjects
from ossabus.contracts.agent import AgentDefinition
from ossabus.contracts.bus import GetManifestRequest, ManifestChanged, ManifestRecord
from ossabus.runtime.bus import BusClient
from ossabus.runtime.registry_revision import RegistryRevision


class AgentDirectory:
    def __init__(self, bus: BusClient):
        self.bus = bus
        self.by_name: dict[str, ManifestRecord] = {}
        self.by_assistant: dict[str, str] = {}
        self.revision = RegistryRevision(bus.broker)

    async def record(
        self, *, name: str | None = None, assistant_id: str | None = None, min_version: int | None = None
    ) -> ManifestRecord:
        """The agent, from cache unless the cache is older than `min_version` (the version the caller saw)."""
        if await self.revision.moved():
            self.by_name.clear()
            self.by_assistant.clear()
        if assistant_id is not None and name is None:
            name = self.by_assistant.get(assistant_id)
        cached = self.by_name.get(name) if name is not None else None
        if cached is not None and (min_version is None or cached.version >= min_version):
            return cached
        record = await self.bus.call(
            subjects.REGISTRY_GET, GetManifestRequest(name=name, assistant_id=assistant_id), ManifestRecord
        )
        self.by_name[record.name] = record
        if assistant_id is not None:
            self.by_assistant[assistant_id] = record.name
        return record

    async def definition(
        self, *, name: str | None = None, assistant_id: str | None = None, min_version: int | None = None
    ) -> AgentDefinition:
        return (await self.record(name=name, assistant_id=assistant_id, min_version=min_version)).definition

    def forget(self, change: ManifestChanged) -> None:
        self.by_name.pop(change.name, None)
        for key in [k for k, v in self.by_assistant.items() if v == change.name]:
            del self.by_assistant[key]
