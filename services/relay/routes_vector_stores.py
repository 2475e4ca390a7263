"""Vector stores: create, list, retrieve, update, delete; their files (attach, list with `filter`,
retrieve, update attributes, remove); search. Indexing is the retrieval service's work: attaching a
file writes its record `in_progress` and queues it on `ossa.ingest.<store>`; the store's counts and
status are read from its files' records."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import Field, field_validator

from ossabus.contracts import subjects
from ossabus.contracts.ids import new_id
from ossabus.contracts.retrieval import (
    ChunkingRefused,
    ContentRequest,
    FileText,
    ForgetRequest,
    Forgotten,
    IngestRequest,
    SearchRequest,
    SearchResults,
    chunking_strategy,
)
from ossabus.relay.auth import DEFAULT_PROJECT
from ossabus.relay.context import bus, checked_id, now
from ossabus.relay.errors import ApiError
from ossabus.relay.openai_requests import Metadata, Strict, check_metadata
from ossabus.relay.pagination import paginate
from ossabus.relay.query_rewrite import rewritten
from ossabus.relay.routes_files import file_or_404, project
from ossabus.store.vector_stores import VectorStore, VectorStoreFile, VectorStores

router = APIRouter(prefix="/v1/vector_stores", tags=["vector stores"])
MAX_ATTRIBUTES = 16


class ExpiresAfter(Strict):
    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


def chunking(given: dict[str, Any] | None) -> dict[str, Any]:
    try:
        return chunking_strategy(given)
    except ChunkingRefused as refused:
        raise ApiError(400, refused.message, param=refused.param) from refused


def check_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
    for key, item in value.items():
        if (
            len(key) > 64
            or not isinstance(item, (str, int, float, bool))
            or (isinstance(item, str) and len(item) > 512)
        ):
            raise ValueError(
                f"attribute {key[:20]!r}: keys up to 64 characters, values strings (512), numbers or booleans"
            )
    return value


class StoreCreate(Strict):
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=512)
    file_ids: list[str] | None = Field(None, max_length=500)
    expires_after: ExpiresAfter | None = None
    chunking_strategy: dict[str, Any] | None = None
    metadata: Metadata
    # ossabus' own field (the SDK's extra_body): the model that embeds this store's files and queries,
    # e.g. `local/all-MiniLM-L6-v2`; without it, OSSABUS_EMBEDDING_MODEL as it is when the first file is indexed
    embedding_model: str | None = Field(None, min_length=1, max_length=200)

    _metadata = field_validator("metadata")(check_metadata)


class StoreUpdate(Strict):
    name: str | None = Field(None, max_length=256)
    expires_after: ExpiresAfter | None = None
    metadata: Metadata

    _metadata = field_validator("metadata")(check_metadata)


class FileAttach(Strict):
    file_id: str
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None

    _attributes = field_validator("attributes")(check_attributes)


class FileUpdate(Strict):
    attributes: dict[str, Any] | None

    _attributes = field_validator("attributes")(check_attributes)


class RankingOptions(Strict):
    ranker: Literal["none", "auto", "default-2024-11-15"] | None = None
    score_threshold: float | None = Field(None, ge=0, le=1)


class SearchBody(Strict):
    query: str | list[str]
    filters: dict[str, Any] | None = None
    max_num_results: int = Field(10, ge=1, le=50)
    ranking_options: RankingOptions | None = None
    rewrite_query: bool | None = None


def stores(request: Request) -> VectorStores:
    return request.app.state.vector_stores


async def store_or_404(request: Request, store_id: str) -> VectorStore:
    found = await stores(request).get(checked_id(store_id, "vector store", "vector_store_id"))
    if found is None or found.project != project(request):
        raise ApiError(404, f"No vector store found with id '{store_id}'.", param="vector_store_id", code="not_found")
    return found


async def shown(request: Request, store: VectorStore) -> dict[str, Any]:
    return store.shown(await stores(request).files(store.id))


def expiry(expires_after: ExpiresAfter | None, active_at: int) -> int | None:
    return active_at + expires_after.days * 86400 if expires_after else None


async def attach(
    request: Request,
    store: VectorStore,
    file_id: str,
    attributes: dict | None,
    strategy: dict | None,
    batch_id: str | None = None,
) -> VectorStoreFile:
    await file_or_404(request, file_id)  # the caller's own file, or not found
    record = VectorStoreFile(
        id=file_id,
        created_at=now(),
        vector_store_id=store.id,
        chunking_strategy=chunking(strategy) if strategy is not None else (store.chunking_strategy or chunking(None)),
        attributes=attributes or {},
        project=store.project,
        batch_id=batch_id,
    )
    await stores(request).put_file(record)
    work = IngestRequest(vector_store_id=store.id, file_id=file_id, project=store.project or DEFAULT_PROJECT)
    js = request.app.state.broker.connection.jetstream()
    try:
        await js.publish(subjects.ingest(store.id), work.model_dump_json().encode(), timeout=5)
    except Exception as exc:  # not queued: the file must not wait in_progress for a message never sent
        error = {"code": "server_error", "message": "the file could not be queued for indexing; attach it again"}
        await stores(request).update_file(
            store.id, file_id, lambda f: f.model_copy(update={"status": "failed", "last_error": error})
        )
        raise ApiError(503, "the file could not be queued for indexing; try again", code="unavailable") from exc
    return record


async def make_store(request: Request, body: StoreCreate) -> VectorStore:
    """A new store of the caller's project with its files queued; every file is checked first."""
    created = now()
    store = VectorStore(
        id=new_id("vs"),
        created_at=created,
        name=body.name,
        description=body.description,
        metadata=body.metadata or {},
        expires_after=body.expires_after.model_dump() if body.expires_after else None,
        expires_at=expiry(body.expires_after, created),
        last_active_at=created,
        project=project(request),
        chunking_strategy=chunking(body.chunking_strategy),
        embedding_model=body.embedding_model,
    )
    for file_id in body.file_ids or []:
        await file_or_404(request, file_id)
    await stores(request).create(store)
    for file_id in body.file_ids or []:
        await attach(request, store, file_id, None, None)
    return store


@router.post("")
async def create_store(request: Request, body: StoreCreate):
    return await shown(request, await make_store(request, body))


@router.get("")
async def list_stores(
    request: Request,
    limit: int = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    before: str | None = None,
):
    mine = [s for s in await stores(request).list() if s.project == project(request)]
    page = paginate(mine, lambda s: s.id, lambda s: s, limit=limit, order=order, after=after, before=before)
    page["data"] = [await shown(request, s) for s in page["data"]]
    return page


@router.get("/{store_id}")
async def get_store(request: Request, store_id: str):
    return await shown(request, await store_or_404(request, store_id))


@router.post("/{store_id}")
async def update_store(request: Request, store_id: str, body: StoreUpdate):
    await store_or_404(request, store_id)
    given = body.model_fields_set

    def change(store: VectorStore) -> VectorStore:
        update: dict[str, Any] = {}
        if "name" in given:
            update["name"] = body.name
        if "metadata" in given:
            update["metadata"] = body.metadata or {}
        if "expires_after" in given:
            update["expires_after"] = body.expires_after.model_dump() if body.expires_after else None
            update["expires_at"] = expiry(body.expires_after, store.last_active_at or store.created_at)
        return store.model_copy(update=update)

    updated = await stores(request).update(store_id, change)
    assert updated is not None
    return await shown(request, updated)


@router.delete("/{store_id}")
async def delete_store(request: Request, store_id: str):
    store = await store_or_404(request, store_id)
    await stores(request).delete(store.id)
    await bus(request).call(subjects.RETRIEVAL_FORGET, ForgetRequest(vector_store_id=store.id), Forgotten)
    return {"id": store.id, "object": "vector_store.deleted", "deleted": True}


# --- files of a store ---------------------------------------------------------------------------------


@router.post("/{store_id}/files")
async def attach_file(request: Request, store_id: str, body: FileAttach):
    store = await store_or_404(request, store_id)
    return await attach(request, store, body.file_id, body.attributes, body.chunking_strategy)


@router.get("/{store_id}/files")
async def list_files(
    request: Request,
    store_id: str,
    limit: int = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    before: str | None = None,
    filter: Literal["in_progress", "completed", "failed", "cancelled"] | None = None,
):
    store = await store_or_404(request, store_id)
    files = [f for f in await stores(request).files(store.id) if filter is None or f.status == filter]
    return paginate(files, lambda f: f.id, lambda f: f, limit=limit, order=order, after=after, before=before)


async def store_file_or_404(request: Request, store_id: str, file_id: str) -> VectorStoreFile:
    store = await store_or_404(request, store_id)
    found = await stores(request).get_file(store.id, checked_id(file_id, "file", "file_id"))
    if found is None:
        raise ApiError(404, f"No file found with id '{file_id}' in vector store '{store_id}'.", param="file_id")
    return found


@router.get("/{store_id}/files/{file_id}")
async def get_file(request: Request, store_id: str, file_id: str):
    return await store_file_or_404(request, store_id, file_id)


@router.post("/{store_id}/files/{file_id}")
async def update_file(request: Request, store_id: str, file_id: str, body: FileUpdate):
    await store_file_or_404(request, store_id, file_id)
    updated = await stores(request).update_file(
        store_id, file_id, lambda f: f.model_copy(update={"attributes": body.attributes or {}})
    )
    return updated


@router.get("/{store_id}/files/{file_id}/content")
async def file_content(request: Request, store_id: str, file_id: str):
    found = await store_file_or_404(request, store_id, file_id)
    parsed = await bus(request).call(
        subjects.RETRIEVAL_CONTENT, ContentRequest(vector_store_id=store_id, file_id=found.id), FileText
    )
    return {
        "object": "vector_store.file_content.page",
        "data": [{"type": "text", "text": parsed.text}],
        "has_more": False,
        "next_page": None,
    }


@router.delete("/{store_id}/files/{file_id}")
async def remove_file(request: Request, store_id: str, file_id: str):
    found = await store_file_or_404(request, store_id, file_id)
    await stores(request).delete_file(store_id, found.id)
    await bus(request).call(
        subjects.RETRIEVAL_FORGET, ForgetRequest(vector_store_id=store_id, file_id=found.id), Forgotten
    )
    return {"id": found.id, "object": "vector_store.file.deleted", "deleted": True}


# --- search ---------------------------------------------------------------------------------------------


@router.post("/{store_id}/search")
async def search(request: Request, store_id: str, body: SearchBody):
    store = await store_or_404(request, store_id)
    if store.expired:
        raise ApiError(400, f"Vector store {store.id} has expired; make a new one.", param="vector_store_id")
    queries = [body.query] if isinstance(body.query, str) else body.query
    if not queries or any(not q.strip() for q in queries):
        raise ApiError(400, "query must be a non-empty string or list of strings", param="query")
    if body.rewrite_query:
        queries = [await rewritten(request, q) for q in queries]
    ranking = body.ranking_options or RankingOptions()
    query = SearchRequest(
        vector_store_ids=[store.id],
        queries=queries,
        filters=body.filters,
        max_num_results=body.max_num_results,
        score_threshold=ranking.score_threshold or 0.0,
        hybrid=ranking.ranker != "none",
        project=project(request),
    )
    found = await bus(request).call(subjects.RETRIEVAL_SEARCH, query, SearchResults, wait_s=60)
    return {
        "object": "vector_store.search_results.page",
        "search_query": queries,
        "data": [
            {
                "file_id": hit.file_id,
                "filename": hit.filename,
                "score": hit.score,
                "attributes": hit.attributes,
                "content": [{"type": "text", "text": hit.text}],
            }
            for hit in found.data
        ],
        "has_more": False,
        "next_page": None,
    }
