"""Messages of the retrieval service: files to index (work queue) and searches (request/reply)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

AUTO = {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}
# `auto` for an offline model (`local/...`): its window is 256 of its own tokens, about 200 of the
# cl100k tokens chunks are counted in; an 800-token chunk would be embedded by its first third only.
LOCAL_MODEL_PREFIX = "local/"
LOCAL_AUTO = {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 100}


def fitted_to(model: str, strategy: dict[str, Any]) -> dict[str, Any]:
    """`strategy` (as stored) for files embedded by `model`: `auto` fits a local model's window."""
    if model.startswith(LOCAL_MODEL_PREFIX) and strategy == {"type": "static", "static": AUTO}:
        return {"type": "static", "static": dict(LOCAL_AUTO)}
    return strategy


MIN_CHUNK, MAX_CHUNK = 100, 4096


class IngestRequest(BaseModel):
    """Index one file into one vector store (`ossa.ingest.<vector store>`). Redelivered until done:
    indexing replaces the file's chunks, so doing it twice leaves one copy."""

    vector_store_id: str
    file_id: str
    project: str = "default"


class SearchRequest(BaseModel):
    vector_store_ids: list[str] = Field(min_length=1)
    queries: list[str] = Field(min_length=1)
    filters: dict[str, Any] | None = None
    max_num_results: int = Field(10, ge=1, le=50)
    score_threshold: float = 0.0
    hybrid: bool = Field(True, description="Dense and sparse (BM25-like) results fused; False: dense only.")
    project: str = "default"
    wait_for_indexing_s: float = Field(
        0.0,
        ge=0,
        le=300,
        description="A run's search waits up to this long for files still being indexed, then searches what is ready.",
    )


class SearchHit(BaseModel):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, Any] = Field(default_factory=dict)
    text: str
    vector_store_id: str


class SearchResults(BaseModel):
    data: list[SearchHit]


class ForgetRequest(BaseModel):
    vector_store_id: str
    file_id: str | None = Field(None, description="None: the whole store.")


class Forgotten(BaseModel):
    ok: bool = True


class ContentRequest(BaseModel):
    vector_store_id: str
    file_id: str


class FileText(BaseModel):
    """A file's text as indexing extracted it (what `vector_stores.files.content` shows)."""

    text: str


class ChunkingRefused(ValueError):
    """A chunking strategy outside OpenAI's limits; the message names the field."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.message, self.param = message, param


def chunking_strategy(given: dict[str, Any] | None) -> dict[str, Any]:
    """The strategy as stored and shown: `{"type": "static", "static": {...}}` (auto resolved)."""
    if given is None or given.get("type") in (None, "auto"):
        return {"type": "static", "static": dict(AUTO)}
    if given.get("type") != "static" or not isinstance(given.get("static"), dict):
        raise ChunkingRefused("chunking_strategy is {type: auto} or {type: static, static: {...}}", "chunking_strategy")
    static = given["static"]
    size, overlap = static.get("max_chunk_size_tokens"), static.get("chunk_overlap_tokens")
    if not isinstance(size, int) or not MIN_CHUNK <= size <= MAX_CHUNK:
        raise ChunkingRefused(
            f"max_chunk_size_tokens must be between {MIN_CHUNK} and {MAX_CHUNK}",
            "chunking_strategy.static.max_chunk_size_tokens",
        )
    if not isinstance(overlap, int) or overlap < 0 or overlap > size // 2:
        raise ChunkingRefused(
            "chunk_overlap_tokens must be between 0 and half of max_chunk_size_tokens",
            "chunking_strategy.static.chunk_overlap_tokens",
        )
    return {"type": "static", "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap}}


def without_content(details: dict[str, Any]) -> dict[str, Any]:
    """A file_search call's details as shown without
    `include[]=step_details.tool_calls[*].file_search.results[*].content` (as OpenAI does)."""
    results = [{k: v for k, v in r.items() if k != "content"} for r in details.get("results") or []]
    return {**details, "results": results}
