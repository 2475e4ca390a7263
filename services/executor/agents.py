"""The agents runs need, from the registry, cached until the registry announces a change."""

from __future__ import annotations

from ossabus.contracts import subjects
from ossabus.contracts.agent import AgentDefinition
from ossabus.contracts.bus import GetManifestRequest, ManifestChanged, ManifestRecord
from ossabus.runtime.bus import BusClient


class AgentDirectory:
    def __init__(self, bus: BusClient):
        self.bus = bus
        self.by_name: dict[str, ManifestRecord] = {}
        self.by_assistant: dict[str, str] = {}

    async def record(self, *, name: str | None = None, assistant_id: str | None = None) -> ManifestRecord:
        if name is not None and name in self.by_name:
            return self.by_name[name]
        if assistant_id is not None and assistant_id in self.by_assistant:
            return self.by_name[self.by_assistant[assistant_id]]
        record = await self.bus.call(
            subjects.REGISTRY_GET, GetManifestRequest(name=name, assistant_id=assistant_id), ManifestRecord
        )
        self.by_name[record.name] = record
        if assistant_id is not None:
            self.by_assistant[assistant_id] = record.name
        return record

    async def definition(self, *, name: str | None = None, assistant_id: str | None = None) -> AgentDefinition:
        return (await self.record(name=name, assistant_id=assistant_id)).definition

    def forget(self, change: ManifestChanged) -> None:
        self.by_name.pop(change.name, None)
        for key in [k for k, v in self.by_assistant.items() if v == change.name]:
            del self.by_assistant[key]
