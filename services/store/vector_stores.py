"""Vector stores and their files as OpenAI shows them, in `ossa_vector_stores`: `<vs>` for a store,
`<vs>.<file>` for a file in it. Counts and the store's status are computed from its files when read,
so there is no counter to keep right across crashes: a file's record is the one truth about it."""

from __future__ import annotations

import time
from typing import Any

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field, SerializationInfo, model_serializer

from ossabus.contracts import subjects
from ossabus.contracts.openai_objects import hide_unless_stored
from ossabus.store import kv as kvs


class VectorStoreFile(BaseModel):
    id: str
    object: str = "vector_store.file"
    created_at: int
    vector_store_id: str
    status: str = "in_progress"  # in_progress, completed, cancelled, failed
    last_error: dict[str, str] | None = None
    usage_bytes: int = 0
    chunking_strategy: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    project: str | None = None
    batch_id: str | None = None  # the file batch that attached it last

    @model_serializer(mode="wrap")
    def _hidden(self, handler, info: SerializationInfo) -> dict[str, Any]:
        return hide_unless_stored(handler(self), info, "project", "batch_id")


class FileBatch(BaseModel):
    """A file batch; its counts and status come from the records of the files it attached."""

    id: str
    object: str = "vector_store.files_batch"
    created_at: int
    vector_store_id: str
    cancelled: bool = False
    project: str | None = None

    @model_serializer(mode="wrap")
    def _hidden(self, handler, info: SerializationInfo) -> dict[str, Any]:
        return hide_unless_stored(handler(self), info, "project", "cancelled")

    def shown(self, files: list[VectorStoreFile]) -> dict[str, Any]:
        counts = {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0}
        for f in files:
            counts[f.status] = counts.get(f.status, 0) + 1
        # cancelling marks the batch's files still in progress cancelled at once
        status = "cancelled" if self.cancelled else ("in_progress" if counts["in_progress"] else "completed")
        return {**self.model_dump(), "status": status, "file_counts": {**counts, "total": len(files)}}


class VectorStore(BaseModel):
    id: str
    object: str = "vector_store"
    created_at: int
    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    expires_after: dict[str, Any] | None = None
    expires_at: int | None = None
    last_active_at: int | None = None
    project: str | None = None
    embedding_model: str | None = None
    chunking_strategy: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _hidden(self, handler, info: SerializationInfo) -> dict[str, Any]:
        return hide_unless_stored(handler(self), info, "project", "embedding_model", "chunking_strategy")

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and time.time() >= self.expires_at

    def active_now(self, at: int) -> VectorStore:
        """Used at `at`: `last_active_at` moves, and with it the expiry an `expires_after` sets."""
        expires_at = self.expires_at
        if self.expires_after is not None:
            expires_at = at + int(self.expires_after.get("days", 0)) * 86400
        return self.model_copy(update={"last_active_at": at, "expires_at": expires_at})

    def shown(self, files: list[VectorStoreFile]) -> dict[str, Any]:
        """The store as the API answers: with `file_counts`, `usage_bytes` and `status` from its files."""
        counts = {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0}
        for f in files:
            counts[f.status] = counts.get(f.status, 0) + 1
        status = "expired" if self.expired else ("in_progress" if counts["in_progress"] else "completed")
        data = self.model_dump()
        if data.get("expires_after") is None:
            data.pop("expires_after", None)  # absent rather than null, as in OpenAI's schema
        return {
            **data,
            "status": status,
            "usage_bytes": sum(f.usage_bytes for f in files if f.status == "completed"),
            "file_counts": {**counts, "total": len(files)},
        }


class VectorStores:
    def __init__(self, bucket: KeyValue):
        self.kv = bucket

    @classmethod
    async def open(cls, js: JetStreamContext) -> VectorStores:
        return cls(await kvs.leader_reads(js, await js.key_value(subjects.VECTOR_STORES_BUCKET)))

    async def create(self, store: VectorStore) -> VectorStore:
        await kvs.create(self.kv, subjects.token(store.id), store)
        return store

    async def get(self, store_id: str) -> VectorStore | None:
        found = await kvs.read(self.kv, subjects.token(store_id), VectorStore)
        return found[0] if found else None

    async def update(self, store_id: str, change) -> VectorStore | None:
        return await kvs.update(self.kv, subjects.token(store_id), VectorStore, change)

    async def list(self) -> list[VectorStore]:
        stores = await kvs.scan(self.kv, "*", VectorStore)
        return sorted(stores, key=lambda s: s.id)

    async def delete(self, store_id: str) -> None:
        await kvs.delete(self.kv, subjects.token(store_id))
        for f in await self.files(store_id):
            await kvs.delete(self.kv, file_key(store_id, f.id))
        for batch in await kvs.scan(self.kv, f"{BATCH}.{subjects.token(store_id)}.*", FileBatch):
            await kvs.delete(self.kv, batch_key(store_id, batch.id))

    async def create_batch(self, batch: FileBatch) -> FileBatch:
        await kvs.create(self.kv, batch_key(batch.vector_store_id, batch.id), batch)
        return batch

    async def get_batch(self, store_id: str, batch_id: str) -> FileBatch | None:
        found = await kvs.read(self.kv, batch_key(store_id, batch_id), FileBatch)
        return found[0] if found else None

    async def update_batch(self, store_id: str, batch_id: str, change) -> FileBatch | None:
        return await kvs.update(self.kv, batch_key(store_id, batch_id), FileBatch, change)

    async def batch_files(self, store_id: str, batch_id: str) -> list[VectorStoreFile]:
        return [f for f in await self.files(store_id) if f.batch_id == batch_id]

    async def put_file(self, record: VectorStoreFile) -> VectorStoreFile:
        await kvs.put(self.kv, file_key(record.vector_store_id, record.id), record)
        return record

    async def get_file(self, store_id: str, file_id: str) -> VectorStoreFile | None:
        found = await kvs.read(self.kv, file_key(store_id, file_id), VectorStoreFile)
        return found[0] if found else None

    async def update_file(self, store_id: str, file_id: str, change) -> VectorStoreFile | None:
        return await kvs.update(self.kv, file_key(store_id, file_id), VectorStoreFile, change)

    async def files(self, store_id: str) -> list[VectorStoreFile]:
        found = await kvs.scan(self.kv, f"{subjects.token(store_id)}.*", VectorStoreFile)
        return sorted(found, key=lambda f: f.id)

    async def delete_file(self, store_id: str, file_id: str) -> None:
        await kvs.delete(self.kv, file_key(store_id, file_id))


def file_key(store_id: str, file_id: str) -> str:
    return f"{subjects.token(store_id)}.{subjects.token(file_id)}"


BATCH = "batch"  # batches live under `batch.<vs>.<batch>`, outside the `<vs>.*` files of a store


def batch_key(store_id: str, batch_id: str) -> str:
    return f"{BATCH}.{subjects.token(store_id)}.{subjects.token(batch_id)}"
