"""Splitting extracted text into overlapping chunks by tokens, as OpenAI's vector stores do:
`auto` is 800 tokens with 400 of overlap; `static` takes `max_chunk_size_tokens` (100-4096) and
`chunk_overlap_tokens` (at most half of it).

Tokens are counted with tiktoken's `cl100k_base`, read from the encodings litellm ships (pinned with
it), so chunking works offline and never downloads anything behind the operator's back.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

# Imported here, on the importing thread: `encoding()` may first run on a worker thread (the
# retrieval service warms it up there), and importing litellm or tiktoken's plugins from two threads
# at once left litellm half-initialised ("module 'litellm' has no attribute 'acompletion'").
import tiktoken
import tiktoken_ext.openai_public  # noqa: F401  (registers cl100k_base)

from ossabus.contracts.retrieval import ChunkingRefused, chunking_strategy

strategy = chunking_strategy  # the name the retrieval code and its tests use
__all__ = ["Chunk", "ChunkingRefused", "chunks", "encoding", "strategy"]


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    tokens: int


@cache
def encoding():
    if not os.environ.get("TIKTOKEN_CACHE_DIR"):
        found = importlib.util.find_spec("litellm")  # its folder, without importing it
        assert found is not None
        assert found.origin is not None
        os.environ["TIKTOKEN_CACHE_DIR"] = str(Path(found.origin).parent / "litellm_core_utils" / "tokenizers")
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
