"""The registry service: owns agent definitions and answers for them on the bus."""

from __future__ import annotations

from ossabus.contracts import subjects
from ossabus.contracts.bus import (
    AnyRequest,
    DeleteManifestRequest,
    DeleteManifestResult,
    GetManifestRequest,
    ListManifestsRequest,
    ManifestChanged,
    ManifestList,
    ManifestListItem,
    ManifestRecord,
    PutManifestRequest,
    PutManifestResult,
    RegistryStatus,
    ValidateManifestRequest,
    ValidateManifestResult,
)
from ossabus.contracts.diagnostics import Diagnostic, ValidationReport
from ossabus.registry.catalog import validate_text
from ossabus.registry.convert_openai import name_from_assistant_id
from ossabus.registry.loading import LoadSummary, load_directories
from ossabus.registry.store import ManifestStore
from ossabus.registry.writes import publish_change, single_valid_entry, store_entry
from ossabus.runtime.bus import BusFailure, endpoint
from ossabus.runtime.service import Service
from ossabus.store import kv as kvs

NAME = "registry"


class RegistryService(Service):
    name = NAME

    def __init__(self, settings):
        super().__init__(settings)
        self.store: ManifestStore | None = None
        self.load_summary: LoadSummary | None = None

    def register(self) -> None:
        sub = self.broker.subscriber
        q = subjects.REGISTRY_QUEUE
        sub(subjects.REGISTRY_LIST, queue=q)(endpoint(ListManifestsRequest, NAME)(self.list_manifests))
        sub(subjects.REGISTRY_GET, queue=q)(endpoint(GetManifestRequest, NAME)(self.get_manifest))
        sub(subjects.REGISTRY_PUT, queue=q)(endpoint(PutManifestRequest, NAME)(self.put_manifest))
        sub(subjects.REGISTRY_DELETE, queue=q)(endpoint(DeleteManifestRequest, NAME)(self.delete_manifest))
        sub(subjects.REGISTRY_VALIDATE, queue=q)(endpoint(ValidateManifestRequest, NAME)(self.validate_manifest))
        sub(subjects.REGISTRY_STATUS, queue=q)(endpoint(AnyRequest, NAME)(self.status))

    @property
    def js(self):
        return self.broker.connection.jetstream()

    async def started(self) -> None:
        kv = await kvs.leader_reads(self.js, await self.js.key_value(subjects.MANIFESTS_BUCKET))
        self.store = ManifestStore(kv)
        self.load_summary = await load_directories(self.settings.all_manifest_dirs(), self.store, self.js)

    def _store(self) -> ManifestStore:
        if self.store is None:
            raise BusFailure.of("unavailable", "the registry is still starting")
        return self.store

    async def list_manifests(self, request: ListManifestsRequest) -> ManifestList:
        records = await self._store().list()
        if request.kind:
            records = [r for r in records if r.kind == request.kind]
        items = [
            ManifestListItem(**r.summary().model_dump(), definition=r.definition if request.with_definitions else None)
            for r in records
        ]
        return ManifestList(data=items)

    async def get_manifest(self, request: GetManifestRequest) -> ManifestRecord:
        if request.assistant_id is not None:
            return await self._by_assistant_id(request.assistant_id)
        if not request.name:
            raise BusFailure.of("invalid_request", "give a name or an assistant_id", "name")
        record = await self._store().get(request.name, request.version)
        if record is None:
            what = f"version {request.version} of manifest" if request.version else "manifest"
            raise BusFailure.of("not_found", f"no {what} named {request.name!r}", "name")
        return record

    async def _by_assistant_id(self, assistant_id: str) -> ManifestRecord:
        """Ids made from names resolve directly; ids kept from imported OpenAI assistants by a scan."""
        store = self._store()
        name = name_from_assistant_id(assistant_id)
        if name is not None:
            record = await store.latest(name)
            if record is not None and record.definition.openai_assistant_id in (None, assistant_id):
                return record
        for name in await store.names():
            record = await store.latest(name)
            if record is not None and record.definition.openai_assistant_id == assistant_id:
                return record
        raise BusFailure.of("not_found", f"No assistant found with id '{assistant_id}'.", "assistant_id")

    async def put_manifest(self, request: PutManifestRequest) -> PutManifestResult:
        store = self._store()
        entry = single_valid_entry(
            request.content,
            fmt=request.format,
            strict=request.strict,
            source=request.source,
            known=set(await store.names()),
        )
        assert entry.definition is not None
        if request.name is not None and entry.definition.name != request.name:
            raise BusFailure.of(
                "invalid_request",
                f"metadata.name {entry.definition.name!r} does not match {request.name!r} in the path",
                "metadata.name",
            )
        return await store_entry(store, self.js, entry, request.source, create_only=request.mode == "create")

    async def delete_manifest(self, request: DeleteManifestRequest) -> DeleteManifestResult:
        if not await self._store().delete(request.name):
            raise BusFailure.of("not_found", f"no manifest named {request.name!r}", "name")
        await publish_change(self.js, ManifestChanged(name=request.name, action="delete"))
        return DeleteManifestResult(name=request.name, deleted=True)

    async def validate_manifest(self, request: ValidateManifestRequest) -> ValidateManifestResult:
        known = set(await self._store().names())
        batch = validate_text(
            request.content,
            fmt=request.format,
            strict=request.strict,
            source=request.source,
            resolve=known.__contains__,
        )
        reports = [e.report for e in batch.entries]
        if batch.unreadable or batch.skipped:
            reports.insert(0, ValidationReport(strict=request.strict, diagnostics=[*batch.unreadable, *batch.skipped]))
        definitions = [e.definition for e in batch.valid_entries if e.definition is not None]
        return ValidateManifestResult(valid=batch.ok, reports=reports, definitions=definitions)

    async def status(self, _: AnyRequest) -> RegistryStatus:
        summary = self.load_summary
        errors: list[Diagnostic] = summary.errors if summary else []
        count = len(await self.store.names()) if self.store else 0
        return RegistryStatus(loaded=summary is not None, manifests=count, load_errors=errors)
