"""Indexing one file of one vector store: extract, chunk, embed (through the executors), index,
then mark the file completed, or failed with the reason. Runs from the work queue: a worker that
dies mid-file leaves the message unacknowledged and another takes it, replacing whatever half of
the file was indexed (point ids are per file and chunk)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ossabus.contracts import subjects
from ossabus.contracts.bus import EmbeddingRequest, Embeddings
from ossabus.contracts.ids import new_id
from ossabus.contracts.retrieval import IngestRequest, fitted_to
from ossabus.retrieval.chunking import chunks
from ossabus.retrieval.extract import Unreadable, extract_text
from ossabus.retrieval.index import Index
from ossabus.runtime.bus import BusClient, BusFailure
from ossabus.store.files import Files
from ossabus.store.vector_stores import VectorStore, VectorStoreFile, VectorStores

log = logging.getLogger(__name__)
EMBED_BATCH = 64
DEFAULT_EMBEDDING_MODEL = "openai/text-embedding-3-small"
EMBEDDING_MODEL_ENV = "OSSABUS_EMBEDDING_MODEL"


class TryLater(Exception):
    """A failure that may pass (the embedding provider, the bus): the message is delivered again."""


@dataclass
class Ingestor:
    bus: BusClient
    files: Files
    stores: VectorStores
    index: Index
    default_model: str = DEFAULT_EMBEDDING_MODEL

    async def ingest(self, request: IngestRequest, last_attempt: bool) -> None:
        record = await self.stores.get_file(request.vector_store_id, request.file_id)
        store = await self.stores.get(request.vector_store_id)
        if record is None or store is None or record.status != "in_progress":
            return  # removed, or done already (a redelivery after the acknowledgement was lost)
        file = await self.files.get(request.file_id)
        if file is None:
            await self._fail(record, "invalid_file", "the file was deleted before it was indexed")
            return
        try:
            text = extract_text(file.filename, await self.files.content(file.id))
            model = await self._model_of(store)
            strategy = fitted_to(model, record.chunking_strategy)
            pieces = chunks(text, strategy)
            vectors = await self._embed([p.text for p in pieces], model, request)
        except Unreadable as unreadable:
            await self._fail(record, unreadable.code, unreadable.message)
            return
        except TryLater as later:
            if last_attempt:
                await self._fail(record, "server_error", f"the file could not be embedded: {later}")
                return
            raise
        payload = {"filename": file.filename, "attributes": record.attributes}
        await self.index.replace_file(store.id, file.id, [p.text for p in pieces], vectors, payload)

        def done(current: VectorStoreFile) -> VectorStoreFile | None:
            if current.status != "in_progress":
                return None
            return current.model_copy(
                update={
                    "status": "completed",
                    "usage_bytes": len(text.encode()),
                    "last_error": None,
                    "chunking_strategy": strategy,  # what was used (auto fitted to a local model)
                }
            )

        stored = await self.stores.update_file(store.id, file.id, done)
        if stored is None or stored.status != "completed":  # removed or cancelled meanwhile: leave nothing behind
            await self.index.forget(store.id, file.id)
            return
        log.info("indexed %s into %s: %d chunks", file.id, store.id, len(pieces))

    async def _model_of(self, store: VectorStore) -> str:
        """The store's embedding model, fixed when its first file is indexed: queries must be embedded
        as its files were, even if OSSABUS_EMBEDDING_MODEL changes later."""
        if store.embedding_model:
            return store.embedding_model
        chosen = self.default_model
        stored = await self.stores.update(
            store.id, lambda s: None if s.embedding_model else s.model_copy(update={"embedding_model": chosen})
        )
        return (stored.embedding_model if stored is not None else None) or chosen

    async def _embed(self, texts: list[str], model: str, request: IngestRequest) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            query = EmbeddingRequest(
                id=new_id("emb"), model=model, input=texts[start : start + EMBED_BATCH], project=request.project
            )
            try:
                vectors += (await self.bus.call(subjects.EMBEDDINGS, query, Embeddings, wait_s=120)).vectors
            except BusFailure as failure:
                raise TryLater(failure.error.message) from failure
        return vectors

    async def fail(self, request: IngestRequest, code: str, message: str) -> None:
        record = await self.stores.get_file(request.vector_store_id, request.file_id)
        if record is not None:
            await self._fail(record, code, message)

    async def _fail(self, record: VectorStoreFile, code: str, message: str) -> None:
        def failed(current: VectorStoreFile) -> VectorStoreFile | None:
            if current.status != "in_progress":
                return None
            return current.model_copy(update={"status": "failed", "last_error": {"code": code, "message": message}})

        await self.stores.update_file(record.vector_store_id, record.id, failed)
        # A file may fail after its chunks were written (its completion could not be stored): a failed
        # file leaves nothing in the index, so searches need no filter for it.
        await self.index.forget(record.vector_store_id, record.id)
