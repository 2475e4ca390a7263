"""The index in a Qdrant server or cluster (`OSSABUS_QDRANT_URL`), through Qdrant's async client:
one collection per vector store. The suite runs the same checks on it (the client's in-memory mode
stands in for a server, which the package registries do not ship) and on the embedded engine."""

from __future__ import annotations

from typing import Any

from qdrant_client import AsyncQdrantClient, models

from ossabus.retrieval.index import (
    DENSE,
    PREFETCH_FACTOR,
    RRF_K,
    SPARSE,
    Hit,
    chunk_payloads,
    point_id,
    qdrant_filter,
    term_counts,
)


def _terms(text: str) -> models.SparseVector:
    indices, values = term_counts(text)
    return models.SparseVector(indices=indices, values=values)


class ClientIndex:
    def __init__(self, client: AsyncQdrantClient):
        self.client = client

    async def close(self) -> None:
        await self.client.close()

    async def _ensure(self, store_id: str, size: int) -> None:
        if await self.client.collection_exists(store_id):
            return
        await self.client.create_collection(
            store_id,
            vectors_config={DENSE: models.VectorParams(size=size, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
        )
        await self.client.create_payload_index(store_id, "file_id", models.PayloadSchemaType.KEYWORD)

    async def replace_file(
        self, store_id: str, file_id: str, texts: list[str], vectors: list[list[float]], payload: dict[str, Any]
    ) -> None:
        await self._ensure(store_id, len(vectors[0]))
        await self.forget(store_id, file_id)
        points = [
            models.PointStruct(id=point_id(file_id, i), vector={DENSE: vector, SPARSE: _terms(text)}, payload=body)
            for i, (text, vector, body) in enumerate(
                zip(texts, vectors, chunk_payloads(file_id, texts, payload), strict=True)
            )
        ]
        await self.client.upsert(store_id, points=points, wait=True)

    async def forget(self, store_id: str, file_id: str | None = None) -> None:
        if not await self.client.collection_exists(store_id):
            return
        if file_id is None:
            await self.client.delete_collection(store_id)
            return
        selector = models.FilterSelector(filter=qdrant_filter([file_id], None, models))
        await self.client.delete(store_id, points_selector=selector, wait=True)

    async def search(
        self,
        store_id: str,
        query: str,
        vector: list[float],
        file_ids: list[str] | None,
        attributes: dict[str, Any] | None,
        limit: int,
        hybrid: bool,
    ) -> list[Hit]:
        if file_ids == [] or not await self.client.collection_exists(store_id):
            return []
        where = qdrant_filter(file_ids, attributes, models)
        if hybrid:
            deep = limit * PREFETCH_FACTOR
            found = await self.client.query_points(
                store_id,
                prefetch=[
                    models.Prefetch(query=vector, using=DENSE, filter=where, limit=deep),
                    models.Prefetch(query=_terms(query), using=SPARSE, filter=where, limit=deep),
                ],
                query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
                limit=limit,
                with_payload=True,
            )
        else:
            found = await self.client.query_points(
                store_id, query=vector, using=DENSE, query_filter=where, limit=limit, with_payload=True
            )
        return [Hit(store_id, float(p.score), dict(p.payload or {})) for p in found.points]
