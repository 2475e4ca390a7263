"""Uploaded files: contents in the JetStream Object Store (`ossa_files`, chunked, replicated like
every stream), records in `ossa_file_records` (id, project, name, size, purpose, expiry).

The record is written after the contents, and deleted before them, so a file is listed only while
its contents are there; a crash between the two leaves an object no record points at (invisible,
and taken again by the same id never: ids are new each time), never a record without contents.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, BinaryIO

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore
from pydantic import BaseModel, SerializationInfo, model_serializer

from ossabus.contracts import subjects
from ossabus.contracts.openai_objects import hide_unless_stored
from ossabus.store import kv as kvs


class FileObject(BaseModel):
    """OpenAI's `File`; `project` is stored, never answered."""

    id: str
    object: str = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: str
    status: str = "processed"
    status_details: str | None = None
    project: str | None = None

    @model_serializer(mode="wrap")
    def _without_project(self, handler, info: SerializationInfo) -> dict[str, Any]:
        data = hide_unless_stored(handler(self), info, "project")
        if not (info.context or {}).get("store"):
            for optional in ("expires_at", "status_details"):  # absent rather than null, as in OpenAI's schema
                if data.get(optional) is None:
                    data.pop(optional, None)
        return data

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and time.time() >= self.expires_at


class Files:
    def __init__(self, records: KeyValue, contents: ObjectStore):
        self.records, self.contents = records, contents

    @classmethod
    async def open(cls, js: JetStreamContext) -> Files:
        records = await kvs.leader_reads(js, await js.key_value(subjects.FILE_RECORDS_BUCKET))
        return cls(records, await js.object_store(subjects.FILES_OBJECT_STORE))

    async def create(self, record: FileObject, data: BinaryIO | bytes) -> FileObject:
        info = await self.contents.put(record.id, data)
        stored = record.model_copy(update={"bytes": int(info.size or 0)})
        await kvs.create(self.records, kv_key(record.id), stored)
        return stored

    async def get(self, file_id: str) -> FileObject | None:
        found = await kvs.read(self.records, kv_key(file_id), FileObject)
        return found[0] if found else None

    async def list(self) -> list[FileObject]:
        return sorted(await kvs.scan(self.records, ">", FileObject), key=lambda f: f.id)

    async def content(self, file_id: str) -> bytes:
        return (await self.contents.get(file_id)).data or b""

    async def delete(self, file_id: str) -> None:
        await kvs.delete(self.records, kv_key(file_id))
        with contextlib.suppress(NotFoundError):
            await self.contents.delete(file_id)


def kv_key(file_id: str) -> str:
    """`file-...` ids are already valid keys; checked as subject tokens like every id."""
    return subjects.token(file_id)
