"""The index: Qdrant. Embedded under the data folder by default (Qdrant Edge, Qdrant's engine inside
this process: `index_edge.py`), or a Qdrant server or cluster when `OSSABUS_QDRANT_URL` is set (its
client: `index_client.py`). Both keep the same points and answer the same searches.

Why Edge and not the client's local mode, which needs no second code path: measured at 10k chunks
(bench/retrieval.py), local mode searched in 7 ms without a filter and 270 ms with a file filter (it
checks each point in Python), and indexed a few hundred chunks a second; Edge, the server's own
engine, answers in 1-3 ms either way and indexes tens of thousands a second.

One collection per vector store (its embedding model fixes the vector size): a dense vector and a
sparse term vector (`modifier: idf`, so Qdrant weighs rare terms up, BM25-style) per chunk, fused
with reciprocal rank fusion at search time, as OpenAI's file_search combines semantic and keyword
search. Point ids derive from (file, chunk index): indexing a file again replaces it, never doubles it.
"""

from __future__ import annotations

import re
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

DENSE, SPARSE = "dense", "terms"
NAMESPACE = uuid.UUID("6f1f8b0e-3c1a-4d5e-9b7a-0a6c2f4e8d11")
QDRANT_URL_ENV = "OSSABUS_QDRANT_URL"
RRF_K = 2  # Qdrant's own constant for reciprocal rank fusion, so both engines score alike
WORD = re.compile(r"\w+")
PREFETCH_FACTOR = 4  # each of the fused searches looks this many times deeper than the answer


def term_counts(text: str) -> tuple[list[int], list[float]]:
    """Word frequencies, each word (lowercased) named by its CRC-32: a vocabulary that needs no
    training, no download and no tokenizer (words, not subword pieces, are what keyword search
    matches; four billion names leave collisions to chance)."""
    counts = Counter(zlib.crc32(word.encode()) for word in WORD.findall(text.lower()))
    indices = sorted(counts)
    return indices, [float(counts[i]) for i in indices]


def point_id(file_id: str, index: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{file_id}:{index}"))


@dataclass
class Hit:
    store_id: str
    score: float
    payload: dict[str, Any]


class FilterRefused(ValueError):
    pass


def qdrant_filter(file_ids: list[str] | None, attributes: dict[str, Any] | None, m: ModuleType | None = None) -> Any:
    """OpenAI's attribute filters (comparison: eq ne gt gte lt lte in nin; compound: and or) in
    Qdrant's terms, built from `m`: the client's `models` or Qdrant Edge, which name them alike."""
    if m is None:
        from qdrant_client import models as m
    must: list[Any] = []
    if file_ids is not None:
        must.append(m.FieldCondition(key="file_id", match=m.MatchAny(any=file_ids)))
    if attributes:
        must.append(_condition(attributes, m))
    return m.Filter(must=must) if must else None


def _condition(node: dict[str, Any], m: ModuleType) -> Any:
    kind = node.get("type")
    if kind in ("and", "or"):
        parts = [_condition(f, m) for f in node.get("filters") or []]
        return m.Filter(must=parts) if kind == "and" else m.Filter(should=parts)
    key, value = node.get("key"), node.get("value")
    if not isinstance(key, str):
        raise FilterRefused("a comparison filter needs `key`")
    field = f"attributes.{key}"
    if kind == "eq":
        return m.FieldCondition(key=field, match=m.MatchValue(value=value))
    if kind == "ne":
        return m.Filter(must_not=[m.FieldCondition(key=field, match=m.MatchValue(value=value))])
    if kind in ("in", "nin") and isinstance(value, list):
        condition = m.FieldCondition(key=field, match=m.MatchAny(any=value))
        return condition if kind == "in" else m.Filter(must_not=[condition])
    if kind in ("gt", "gte", "lt", "lte") and isinstance(value, (int, float)):
        bounds = getattr(m, "Range", None) or m.RangeFloat
        return m.FieldCondition(key=field, range=bounds(**{kind: value}))
    raise FilterRefused(f"filter type {kind!r} is not one of eq, ne, gt, gte, lt, lte, in, nin, and, or")


def chunk_payloads(file_id: str, texts: list[str], payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**payload, "file_id": file_id, "chunk": i, "text": text} for i, text in enumerate(texts)]


class Index(Protocol):
    async def close(self) -> None: ...

    async def replace_file(
        self, store_id: str, file_id: str, texts: list[str], vectors: list[list[float]], payload: dict[str, Any]
    ) -> None:
        """The file's chunks, instead of whatever of it was there (a crashed earlier attempt's)."""

    async def forget(self, store_id: str, file_id: str | None = None) -> None:
        """A file's chunks, or (no file) the whole store."""

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
        """`file_ids` limits the search to those files (None: every chunk of the store); `hybrid`
        fuses the dense and the term search, otherwise dense only."""


async def open_index(data_dir: Path | None, url: str | None) -> Index:
    if url:
        from qdrant_client import AsyncQdrantClient

        from ossabus.retrieval.index_client import ClientIndex

        return ClientIndex(AsyncQdrantClient(url=url))
    from ossabus.retrieval.index_edge import EdgeIndex
    from ossabus.retrieval.index_migration import carry_local_mode_into

    folder = data_dir or Path(".")
    edge = EdgeIndex.open(folder / "qdrant-edge")
    await carry_local_mode_into(edge, folder)
    return edge
