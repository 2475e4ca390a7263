"""The index: Qdrant, embedded under the data folder by default (the client's local mode), or a
Qdrant server or cluster when `OSSABUS_QDRANT_URL` is set, through the same code.

One collection per vector store (its embedding model fixes the vector size): a dense vector and a
sparse term vector (`modifier: idf`, so Qdrant weighs rare terms up, BM25-style) per chunk, fused
with reciprocal rank fusion at search time, as OpenAI's file_search combines semantic and keyword
search. Point ids derive from (file, chunk index): indexing a file again replaces it, never doubles it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from ossabus.retrieval.chunking import encoding

DENSE, SPARSE = "dense", "terms"
NAMESPACE = uuid.UUID("6f1f8b0e-3c1a-4d5e-9b7a-0a6c2f4e8d11")
QDRANT_URL_ENV = "OSSABUS_QDRANT_URL"


def sparse_vector(text: str) -> models.SparseVector:
    """Term frequencies over the tokenizer's ids (a vocabulary that needs no training or download)."""
    counts = Counter(encoding().encode(text.lower(), disallowed_special=()))
    indices = sorted(counts)
    return models.SparseVector(indices=indices, values=[float(counts[i]) for i in indices])


def point_id(file_id: str, index: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{file_id}:{index}"))


@dataclass
class Hit:
    store_id: str
    score: float
    payload: dict[str, Any]


def qdrant_filter(file_ids: list[str] | None, attributes: dict[str, Any] | None) -> models.Filter | None:
    """OpenAI's attribute filters (comparison: eq ne gt gte lt lte in nin; compound: and or) in Qdrant's terms."""
    must: list[Any] = []
    if file_ids is not None:
        must.append(models.FieldCondition(key="file_id", match=models.MatchAny(any=file_ids)))
    if attributes:
        must.append(_condition(attributes))
    return models.Filter(must=must) if must else None


class FilterRefused(ValueError):
    pass


def _condition(node: dict[str, Any]) -> Any:
    kind = node.get("type")
    if kind in ("and", "or"):
        parts = [_condition(f) for f in node.get("filters") or []]
        return models.Filter(must=parts) if kind == "and" else models.Filter(should=parts)
    key, value = node.get("key"), node.get("value")
    if not isinstance(key, str):
        raise FilterRefused("a comparison filter needs `key`")
    field = f"attributes.{key}"
    if kind == "eq":
        return models.FieldCondition(key=field, match=models.MatchValue(value=value))
    if kind == "ne":
        return models.Filter(must_not=[models.FieldCondition(key=field, match=models.MatchValue(value=value))])
    if kind in ("in", "nin") and isinstance(value, list):
        condition = models.FieldCondition(key=field, match=models.MatchAny(any=value))
        return condition if kind == "in" else models.Filter(must_not=[condition])
    if kind in ("gt", "gte", "lt", "lte") and isinstance(value, (int, float)):
        return models.FieldCondition(key=field, range=models.Range(**{kind: value}))
    raise FilterRefused(f"filter type {kind!r} is not one of eq, ne, gt, gte, lt, lte, in, nin, and, or")


class Index:
    def __init__(self, client: AsyncQdrantClient):
        self.client = client

    @classmethod
    def open(cls, data_dir: Path | None, url: str | None) -> Index:
        if url:
            return cls(AsyncQdrantClient(url=url))
        folder = (data_dir or Path(".")) / "qdrant"
        folder.mkdir(parents=True, exist_ok=True)
        return cls(AsyncQdrantClient(path=str(folder)))

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

    async def replace_file(
        self, store_id: str, file_id: str, texts: list[str], vectors: list[list[float]], payload: dict[str, Any]
    ) -> None:
        """The file's chunks, instead of whatever of it was there (a crashed earlier attempt's)."""
        await self._ensure(store_id, len(vectors[0]))
        await self.forget(store_id, file_id)
        points = [
            models.PointStruct(
                id=point_id(file_id, i),
                vector={DENSE: vector, SPARSE: sparse_vector(text)},
                payload={**payload, "file_id": file_id, "chunk": i, "text": text},
            )
            for i, (text, vector) in enumerate(zip(texts, vectors, strict=True))
        ]
        await self.client.upsert(store_id, points=points, wait=True)

    async def forget(self, store_id: str, file_id: str | None = None) -> None:
        if not await self.client.collection_exists(store_id):
            return
        if file_id is None:
            await self.client.delete_collection(store_id)
            return
        selector = models.FilterSelector(filter=qdrant_filter([file_id], None))
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
        """`file_ids` limits the search to those files; None searches every chunk of the store (a
        filter costs: Qdrant's local mode checks it point by point, 40x slower at 10k chunks)."""
        if file_ids == [] or not await self.client.collection_exists(store_id):
            return []
        where = qdrant_filter(file_ids, attributes)
        if hybrid:
            found = await self.client.query_points(
                store_id,
                prefetch=[
                    models.Prefetch(query=vector, using=DENSE, filter=where, limit=limit * 4),
                    models.Prefetch(query=sparse_vector(query), using=SPARSE, filter=where, limit=limit * 4),
                ],
                query=models.FusionQuery(fusion=models.Fusion.RRF),
                limit=limit,
                with_payload=True,
            )
        else:
            found = await self.client.query_points(
                store_id, query=vector, using=DENSE, query_filter=where, limit=limit, with_payload=True
            )
        return [Hit(store_id, float(p.score), dict(p.payload or {})) for p in found.points]
