"""Vector store file batches: attach many files at once (`file_ids`, or `files` each with its own
attributes and chunking), follow them as one (the SDK's `file_batches.upload_and_poll` polls the
batch), list the batch's files, cancel what is not indexed yet.

A batch holds no counters: its counts and status are read from the records of the files it
attached, as a store's are, so a crash between two attachments leaves nothing to reconcile."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import Field, field_validator, model_validator

from ossabus.contracts import subjects
from ossabus.contracts.ids import new_id
from ossabus.contracts.retrieval import ForgetRequest, Forgotten
from ossabus.relay.context import bus, checked_id, now
from ossabus.relay.errors import ApiError
from ossabus.relay.openai_requests import Strict
from ossabus.relay.pagination import paginate
from ossabus.relay.routes_files import file_or_404
from ossabus.relay.routes_vector_stores import attach, check_attributes, chunking, store_or_404, stores
from ossabus.store.vector_stores import FileBatch, VectorStoreFile

router = APIRouter(prefix="/v1/vector_stores", tags=["vector stores"])
MAX_BATCH = 500


class BatchFile(Strict):
    file_id: str
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None

    _attributes = field_validator("attributes")(check_attributes)


class BatchCreate(Strict):
    file_ids: list[str] | None = Field(None, min_length=1, max_length=MAX_BATCH)
    files: list[BatchFile] | None = Field(None, min_length=1, max_length=MAX_BATCH)
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None

    _attributes = field_validator("attributes")(check_attributes)

    @model_validator(mode="after")
    def _one_list(self) -> BatchCreate:
        if (self.file_ids is None) == (self.files is None):
            raise ValueError("give exactly one of file_ids and files")
        return self

    def entries(self) -> list[BatchFile]:
        if self.files is not None:
            return self.files
        return [
            BatchFile(file_id=f, attributes=self.attributes, chunking_strategy=self.chunking_strategy)
            for f in self.file_ids or []
        ]


async def batch_or_404(request: Request, store_id: str, batch_id: str) -> FileBatch:
    store = await store_or_404(request, store_id)
    found = await stores(request).get_batch(store.id, checked_id(batch_id, "file batch", "batch_id"))
    if found is None:
        raise ApiError(404, f"No file batch found with id '{batch_id}'.", param="batch_id", code="not_found")
    return found


async def shown(request: Request, batch: FileBatch) -> dict[str, Any]:
    return batch.shown(await stores(request).batch_files(batch.vector_store_id, batch.id))


@router.post("/{store_id}/file_batches")
async def create_batch(request: Request, store_id: str, body: BatchCreate):
    store = await store_or_404(request, store_id)
    entries = body.entries()
    for entry in entries:  # every file is the caller's and every strategy valid before anything is written
        await file_or_404(request, entry.file_id)
        if entry.chunking_strategy is not None:
            chunking(entry.chunking_strategy)
    batch = await stores(request).create_batch(
        FileBatch(id=new_id("vsfb"), created_at=now(), vector_store_id=store.id, project=store.project)
    )
    for entry in entries:
        await attach(request, store, entry.file_id, entry.attributes, entry.chunking_strategy, batch_id=batch.id)
    return await shown(request, batch)


@router.get("/{store_id}/file_batches/{batch_id}")
async def get_batch(request: Request, store_id: str, batch_id: str):
    return await shown(request, await batch_or_404(request, store_id, batch_id))


@router.post("/{store_id}/file_batches/{batch_id}/cancel")
async def cancel_batch(request: Request, store_id: str, batch_id: str):
    """Files not indexed yet are cancelled now (a worker that finishes one later leaves nothing
    behind: the ingestor only completes a file still in progress, and drops its chunks otherwise)."""
    batch = await batch_or_404(request, store_id, batch_id)
    await stores(request).update_batch(
        batch.vector_store_id, batch.id, lambda b: b.model_copy(update={"cancelled": True})
    )

    def cancelled(current: VectorStoreFile) -> VectorStoreFile | None:
        if current.status != "in_progress" or current.batch_id != batch.id:
            return None
        return current.model_copy(update={"status": "cancelled"})

    for record in await stores(request).batch_files(batch.vector_store_id, batch.id):
        if record.status == "in_progress":
            await stores(request).update_file(batch.vector_store_id, record.id, cancelled)
            await bus(request).call(
                subjects.RETRIEVAL_FORGET,
                ForgetRequest(vector_store_id=batch.vector_store_id, file_id=record.id),
                Forgotten,
            )
    updated = await stores(request).get_batch(batch.vector_store_id, batch.id)
    assert updated is not None
    return await shown(request, updated)


@router.get("/{store_id}/file_batches/{batch_id}/files")
async def list_batch_files(
    request: Request,
    store_id: str,
    batch_id: str,
    limit: int = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    before: str | None = None,
    filter: Literal["in_progress", "completed", "failed", "cancelled"] | None = None,
):
    batch = await batch_or_404(request, store_id, batch_id)
    files = [
        f
        for f in await stores(request).batch_files(batch.vector_store_id, batch.id)
        if filter is None or f.status == filter
    ]
    return paginate(files, lambda f: f.id, lambda f: f, limit=limit, order=order, after=after, before=before)
