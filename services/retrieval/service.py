"""The retrieval service: indexes files into vector stores and searches them.

Consumes the `OSSA_INGEST` work queue (durable consumer `ossa-retrieval`, explicit acks): one
message per file to index; a failure that may pass is delivered again (up to 5 times, then the
file fails), a worker that dies leaves its message to another. Answers `ossa.retrieval.search`
(SearchRequest -> SearchResults) and `ossa.retrieval.forget` (drop a file's or a store's chunks).
Stores chunks in Qdrant (`index.py`) and file states in `ossa_vector_stores`.

It owns the index because the embedded engine (Qdrant's local mode, under the data folder) may be
opened by one process only: with the embedded engine run one retrieval process; with a Qdrant
server (`OSSABUS_QDRANT_URL`) run as many as the ingestion load needs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from faststream.nats.annotations import NatsMessage
from pydantic import ValidationError

from ossabus.contracts import subjects
from ossabus.contracts.bus import EmbeddingRequest, Embeddings
from ossabus.contracts.ids import new_id
from ossabus.contracts.retrieval import (
    ContentRequest,
    FileText,
    ForgetRequest,
    Forgotten,
    IngestRequest,
    SearchHit,
    SearchRequest,
    SearchResults,
)
from ossabus.retrieval.chunking import encoding
from ossabus.retrieval.extract import Unreadable, extract_text
from ossabus.retrieval.index import QDRANT_URL_ENV, FilterRefused, Index, open_index, qdrant_filter
from ossabus.retrieval.ingest import DEFAULT_EMBEDDING_MODEL, EMBEDDING_MODEL_ENV, Ingestor, TryLater
from ossabus.runtime.admission import admit, keep_in_progress, work_queue
from ossabus.runtime.bus import BusClient, BusFailure, endpoint
from ossabus.runtime.resilient_fetch import keep_fetching
from ossabus.runtime.service import Service
from ossabus.store.files import Files
from ossabus.store.vector_stores import VectorStore, VectorStores

log = logging.getLogger(__name__)
NAME = "retrieval"
MAX_DELIVER = 5
KEEPALIVE_S = 10.0
INDEXING_POLL_S = 0.25
ACTIVITY_GRANULARITY_S = 60
INGEST_CONCURRENCY_ENV = "OSSABUS_INGEST_CONCURRENCY"
DEFAULT_INGEST_CONCURRENCY = 1  # files one process indexes at once (4 measured no faster with an instant provider)
DRAIN_S = 2.0


class RetrievalService(Service):
    name = NAME

    def __init__(self, settings):
        super().__init__(settings)
        self.index: Index | None = None
        self.ingestor: Ingestor | None = None
        self.stores: VectorStores | None = None
        self.files: Files | None = None
        self.bus: BusClient | None = None
        self.work_queue = None
        self._warming: asyncio.Task | None = None
        self.slots = asyncio.Semaphore(int(os.environ.get(INGEST_CONCURRENCY_ENV, DEFAULT_INGEST_CONCURRENCY)))
        self.indexing: set[asyncio.Task] = set()
        self.ready = asyncio.Event()
        self.default_model = os.environ.get(EMBEDDING_MODEL_ENV) or DEFAULT_EMBEDDING_MODEL

    def register(self) -> None:
        sub = self.broker.subscriber
        # the same lease as a run's (OSSABUS_ACK_WAIT_S): a worker that dies gives its file up that soon
        self.work_queue = work_queue(
            self.broker,
            subjects.INGEST_ALL,
            subjects.INGEST_STREAM,
            subjects.INGEST_CONSUMER,
            self.settings.ack_wait_s,
            MAX_DELIVER,
        )
        self.work_queue(self.on_ingest)
        sub(subjects.RETRIEVAL_SEARCH, queue=subjects.RETRIEVAL_QUEUE)(endpoint(SearchRequest, NAME)(self.search))
        sub(subjects.RETRIEVAL_FORGET, queue=subjects.RETRIEVAL_QUEUE)(endpoint(ForgetRequest, NAME)(self.forget))
        sub(subjects.RETRIEVAL_CONTENT, queue=subjects.RETRIEVAL_QUEUE)(endpoint(ContentRequest, NAME)(self.content))

    async def started(self) -> None:
        js = self.broker.connection.jetstream()
        self.bus = BusClient(self.broker, self.settings.request_timeout_s)
        self.index = await open_index(self.settings.data_dir, os.environ.get(QDRANT_URL_ENV))
        self.stores = await VectorStores.open(js)
        files = await Files.open(js)
        self.files = files
        self.ingestor = Ingestor(self.bus, files, self.stores, self.index, self.default_model)
        keep_fetching(self.work_queue, "the ingestion queue")
        # the tokenizer (chunks, term vectors) takes seconds to load: not on the first file's or search's time
        self._warming = asyncio.create_task(asyncio.to_thread(encoding))
        self.ready.set()

    async def stopping(self) -> None:
        # files being indexed get a moment to finish; the rest go back to the queue unacknowledged,
        # and another process (or this one, restarted) indexes them again from the start
        if self.indexing:
            _, unfinished = await asyncio.wait(set(self.indexing), timeout=DRAIN_S)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        if self.index is not None:
            await self.index.close()

    async def on_ingest(self, msg: NatsMessage) -> None:
        """Admit one file: wait for a free slot (telling JetStream the message is being held), then
        index it in its own task, so a process indexes several files at once (their embedding calls
        overlap) while the queue still hands out one message at a time."""
        await self.ready.wait()  # the queue may deliver before started() has opened the index
        await admit(self.slots, msg.raw_message, self.settings.ack_wait_s, lambda: self._index_one(msg), self.indexing)

    async def _index_one(self, msg: NatsMessage) -> None:
        try:
            await self._carry(msg)
        except Exception:  # an ack or nak that met a bus outage: the message comes back after its ack wait
            log.exception("an ingestion message could not be settled")

    async def _carry(self, msg: NatsMessage) -> None:
        raw = msg.raw_message
        try:
            request = IngestRequest.model_validate_json(msg.body)
        except ValidationError:
            log.warning("dropping a malformed ingestion message")
            await raw.term()
            return
        assert self.ingestor is not None
        keepalive = asyncio.create_task(
            keep_in_progress(raw, min(KEEPALIVE_S, self.settings.ack_wait_s / 3))
        )  # big files outlast the ack wait
        try:
            last = raw.metadata.num_delivered >= MAX_DELIVER
            await self.ingestor.ingest(request, last_attempt=last)
            await raw.ack()
        except TryLater as later:
            log.warning("indexing %s into %s: %s; trying again", request.file_id, request.vector_store_id, later)
            await raw.nak(delay=2.0 * self.settings.redelivery_base_s * raw.metadata.num_delivered)
        except Exception:
            log.exception("indexing %s into %s failed", request.file_id, request.vector_store_id)
            if raw.metadata.num_delivered >= MAX_DELIVER:  # no more deliveries: the file must not stay in_progress
                await self.ingestor.fail(request, "server_error", "the file could not be indexed")
                await raw.ack()
            else:
                await raw.nak(delay=2.0 * self.settings.redelivery_base_s)
        finally:
            keepalive.cancel()

    async def search(self, request: SearchRequest) -> SearchResults:
        await self.ready.wait()
        assert self.index is not None
        assert self.stores is not None
        try:
            qdrant_filter(None, request.filters)  # refused before any work, indexed or not
        except FilterRefused as refused:
            raise BusFailure.of("invalid_request", str(refused), param="filters") from refused
        hits: dict[tuple[str, int], SearchHit] = {}
        embedded: dict[str, list[list[float]]] = {}  # the queries' vectors by embedding model
        deadline = time.monotonic() + request.wait_for_indexing_s
        for store_id in request.vector_store_ids:
            store = await self.stores.get(store_id)
            if store is None or (store.project or "default") != request.project or store.expired:
                continue  # another project's store is as absent as a deleted one; an expired one is unusable
            await self._touch(store)
            files = await self.stores.files(store_id)
            while any(f.status == "in_progress" for f in files) and time.monotonic() < deadline:
                await asyncio.sleep(INDEXING_POLL_S)
                files = await self.stores.files(store_id)
            ready = {f.id for f in files if f.status == "completed"}
            if not ready:
                continue  # only files indexed to the end are searched: nothing half-visible
            # Only a file still being indexed can have chunks in the index that must not be seen (a
            # failed, cancelled or removed file's chunks are dropped), so without one no filter is needed.
            searched = sorted(ready) if any(f.status == "in_progress" for f in files) else None
            model = store.embedding_model or self.default_model
            if model not in embedded:
                embedded[model] = await self._embed_queries(model, request)
            for text, vector in zip(request.queries, embedded[model], strict=True):
                found = await self.index.search(
                    store_id, text, vector, searched, request.filters, request.max_num_results, request.hybrid
                )
                for hit in found:
                    if hit.payload["file_id"] not in ready:
                        continue  # left behind by a removal whose clean-up failed: never shown
                    key = (hit.payload["file_id"], int(hit.payload.get("chunk", 0)))
                    if hit.score < request.score_threshold or (key in hits and hits[key].score >= hit.score):
                        continue
                    hits[key] = SearchHit(
                        file_id=hit.payload["file_id"],
                        filename=hit.payload.get("filename", ""),
                        score=hit.score,
                        attributes=hit.payload.get("attributes") or {},
                        text=hit.payload.get("text", ""),
                        vector_store_id=store_id,
                    )
        ranked = sorted(hits.values(), key=lambda h: h.score, reverse=True)[: request.max_num_results]
        return SearchResults(data=ranked)

    async def _touch(self, store: VectorStore) -> None:
        """A search is activity: move `last_active_at` (at most once a minute: a write per search
        would cost more than the precision is worth)."""
        at = int(time.time())
        if store.last_active_at is not None and at - store.last_active_at < ACTIVITY_GRANULARITY_S:
            return
        assert self.stores is not None
        await self.stores.update(
            store.id, lambda s: None if s.expired else s.active_now(max(at, s.last_active_at or 0))
        )

    async def _embed_queries(self, model: str, request: SearchRequest) -> list[list[float]]:
        assert self.bus is not None
        query = EmbeddingRequest(id=new_id("emb"), model=model, input=request.queries, project=request.project)
        return (await self.bus.call(subjects.EMBEDDINGS, query, Embeddings, wait_s=60)).vectors

    async def forget(self, request: ForgetRequest) -> Forgotten:
        await self.ready.wait()
        assert self.index is not None
        await self.index.forget(request.vector_store_id, request.file_id)
        return Forgotten()

    async def content(self, request: ContentRequest) -> FileText:
        """The text of a file of a store, extracted as indexing does (the relay checked the caller's project)."""
        await self.ready.wait()
        assert self.files is not None
        assert self.stores is not None
        record = await self.stores.get_file(request.vector_store_id, request.file_id)
        file = await self.files.get(request.file_id)
        if record is None or file is None:
            raise BusFailure.of("not_found", f"No file found with id '{request.file_id}'.", param="file_id")
        try:
            return FileText(text=extract_text(file.filename, await self.files.content(file.id)))
        except Unreadable as unreadable:
            raise BusFailure.of("invalid_request", unreadable.message, param="file_id") from unreadable
