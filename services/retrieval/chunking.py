"""Splitting extracted text into overlapping chunks by tokens, as OpenAI's vector stores do:
`auto` is 800 tokens with 400 of overlap; `static` takes `max_chunk_size_tokens` (100-4096) and
`chunk_overlap_tokens` (at most half of it).

Tokens are counted with tiktoken's `cl100k_base`, read from the encodings litellm ships (pinned with
it), so chunking works offline and never downloads anything behind the operator's back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

AUTO = {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}
MIN_CHUNK, MAX_CHUNK = 100, 4096


class ChunkingRefused(ValueError):
    """A chunking strategy outside OpenAI's limits; the message names the field."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.message, self.param = message, param


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    tokens: int


def strategy(given: dict[str, Any] | None) -> dict[str, Any]:
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


@cache
def encoding():
    if not os.environ.get("TIKTOKEN_CACHE_DIR"):
        import litellm.litellm_core_utils.tokenizers as bundled

        os.environ["TIKTOKEN_CACHE_DIR"] = str(Path(bundled.__file__).parent)
    import tiktoken

    return tiktoken.get_encoding("cl100k_base")


def chunks(text: str, chosen: dict[str, Any]) -> list[Chunk]:
    """`text` in windows of `max_chunk_size_tokens`, each starting `size - overlap` after the last."""
    static = chosen["static"]
    size, overlap = static["max_chunk_size_tokens"], static["chunk_overlap_tokens"]
    tokens = encoding().encode(text, disallowed_special=())
    if not tokens:
        return []
    step = size - overlap
    out: list[Chunk] = []
    start = 0
    while True:
        window = tokens[start : start + size]
        out.append(Chunk(index=len(out), text=encoding().decode(window), tokens=len(window)))
        if start + size >= len(tokens):
            return out
        start += step
