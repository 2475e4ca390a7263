"""The index embedded in the retrieval process: Qdrant Edge, one shard per vector store in
`<data>/qdrant-edge/<store id>`, with the server's points, vectors and fusion.

Edge's calls are synchronous; they run on one thread of their own so the event loop (NATS heartbeats,
other requests) never waits on them, and one at a time, so a shard is never used from two threads.
A shard's writes are flushed before the call returns: a process killed afterwards has lost nothing.
One process may open the folder: a lock file says who has it (the kernel drops it when that process
dies, so a killed indexer's successor opens it at once).
"""

from __future__ import annotations

import asyncio
import fcntl
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import qdrant_edge as qe

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

STORE_FOLDER = re.compile(r"vs_[A-Za-z0-9_-]{1,64}")


class IndexInUse(RuntimeError):
    pass


def _terms(text: str) -> qe.SparseVector:
    indices, values = term_counts(text)
    return qe.SparseVector(indices=indices, values=values)


class EdgeIndex:
    def __init__(self, folder: Path, lock: Any):
        self.folder = folder
        self._lock = lock
        self._shards: dict[str, qe.EdgeShard] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-edge")

    @classmethod
    def open(cls, folder: Path) -> EdgeIndex:
        folder.mkdir(parents=True, exist_ok=True)
        lock = (folder / ".lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as held:
            lock.close()
            raise IndexInUse(
                f"the embedded index in {folder} is open in another process; run one retrieval process "
                "per data folder, or set OSSABUS_QDRANT_URL to share a Qdrant server"
            ) from held
        return cls(folder, lock)

    async def _run(self, work, *args):
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    async def close(self) -> None:
        await self._run(self._close_all)
        self._thread.shutdown(wait=True)
        self._lock.close()

    def _close_all(self) -> None:
        for shard in self._shards.values():
            shard.close()
        self._shards.clear()

    def _path(self, store_id: str) -> Path:
        if not STORE_FOLDER.fullmatch(store_id):  # ids are ours, but a path is made of it
            raise ValueError(f"not a vector store id: {store_id!r}")
        return self.folder / store_id

    def _shard(self, store_id: str, size: int | None) -> qe.EdgeShard | None:
        """The store's shard, opened or (given the vector size) made; None if it has none yet."""
        shard = self._shards.get(store_id)
        if shard is not None:
            return shard
        path = self._path(store_id)
        if path.is_dir():
            shard = qe.EdgeShard.load(str(path))
        elif size is None:
            return None
        else:
            path.mkdir()
            config = qe.EdgeConfig(
                vectors={DENSE: qe.EdgeVectorParams(size=size, distance=qe.Distance.Cosine)},
                sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            )
            shard = qe.EdgeShard.create(str(path), config)
            shard.update(qe.UpdateOperation.create_field_index("file_id", qe.PayloadSchemaType.Keyword))
        self._shards[store_id] = shard
        return shard

    async def replace_file(
        self, store_id: str, file_id: str, texts: list[str], vectors: list[list[float]], payload: dict[str, Any]
    ) -> None:
        points = [
            qe.Point(id=point_id(file_id, i), vector={DENSE: vector, SPARSE: _terms(text)}, payload=body)
            for i, (text, vector, body) in enumerate(
                zip(texts, vectors, chunk_payloads(file_id, texts, payload), strict=True)
            )
        ]
        await self._run(self._replace, store_id, file_id, len(vectors[0]), points)

    def _replace(self, store_id: str, file_id: str, size: int, points: list[qe.Point]) -> None:
        shard = self._shard(store_id, size)
        assert shard is not None
        shard.update(qe.UpdateOperation.delete_points_by_filter(qdrant_filter([file_id], None, qe)))
        shard.update(qe.UpdateOperation.upsert_points(points))
        shard.flush()

    async def put_points(
        self, store_id: str, points: list[tuple[str, list[float], tuple[list[int], list[float]], dict | None]]
    ) -> None:
        """Points as another engine kept them: (id, dense vector, term vector, payload)."""
        made = [
            qe.Point(
                id=pid, vector={DENSE: dense, SPARSE: qe.SparseVector(indices=terms[0], values=terms[1])}, payload=body
            )
            for pid, dense, terms, body in points
        ]
        await self._run(self._put, store_id, len(points[0][1]), made)

    def _put(self, store_id: str, size: int, points: list[qe.Point]) -> None:
        shard = self._shard(store_id, size)
        assert shard is not None
        shard.update(qe.UpdateOperation.upsert_points(points))
        shard.flush()

    async def forget(self, store_id: str, file_id: str | None = None) -> None:
        await self._run(self._forget, store_id, file_id)

    def _forget(self, store_id: str, file_id: str | None) -> None:
        if file_id is None:
            shard = self._shards.pop(store_id, None)
            if shard is not None:
                shard.close()
            shutil.rmtree(self._path(store_id), ignore_errors=True)
            return
        shard = self._shard(store_id, None)
        if shard is not None:
            shard.update(qe.UpdateOperation.delete_points_by_filter(qdrant_filter([file_id], None, qe)))
            shard.flush()

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
        if file_ids == []:
            return []
        where = qdrant_filter(file_ids, attributes, qe)
        if hybrid:
            deep = limit * PREFETCH_FACTOR
            request = qe.QueryRequest(
                limit=limit,
                prefetches=[
                    qe.Prefetch(limit=deep, query=qe.Query.Nearest(vector, using=DENSE), filter=where),
                    qe.Prefetch(limit=deep, query=qe.Query.Nearest(_terms(query), using=SPARSE), filter=where),
                ],
                query=qe.Fusion.Rrf(k=RRF_K),
                with_payload=True,
            )
        else:
            request = qe.QueryRequest(
                limit=limit, query=qe.Query.Nearest(vector, using=DENSE), filter=where, with_payload=True
            )
        found = await self._run(self._query, store_id, request)
        return [Hit(store_id, float(p.score), dict(p.payload or {})) for p in found]

    def _query(self, store_id: str, request: qe.QueryRequest) -> list[Any]:
        shard = self._shard(store_id, None)
        return [] if shard is None else shard.query(request)
