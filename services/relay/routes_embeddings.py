"""`POST /v1/embeddings`: vectors from a provider model, through the executors (where provider
calls, keys and retries live). `encoding_format: base64` (what the `openai` SDK asks for by
default) is little-endian float32, as OpenAI sends it."""

from __future__ import annotations

import base64
import struct
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import Field, field_validator

from ossabus.contracts import subjects
from ossabus.contracts.bus import EmbeddingRequest, Embeddings
from ossabus.contracts.ids import new_id
from ossabus.relay.auth import caller, principal
from ossabus.relay.context import bus
from ossabus.relay.errors import ApiError
from ossabus.relay.openai_requests import Strict
from ossabus.relay.routes_chat import resolve_target

router = APIRouter(prefix="/v1", tags=["embeddings"])
MAX_INPUTS = 2048

Tokens = Annotated[list[int], Field(min_length=1)]


class EmbeddingCreate(Strict):
    model: str = Field(min_length=1)
    input: str | list[str] | Tokens | list[Tokens]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value):
        items = [value] if isinstance(value, str) else value
        if not items:
            raise ValueError("input must not be empty")
        if len(items) > MAX_INPUTS:
            raise ValueError(f"at most {MAX_INPUTS} inputs per request")
        if any(isinstance(item, str) and not item for item in items):
            raise ValueError("input strings must not be empty")
        return value


def encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


EMBEDDING_WAIT_S = 120.0


@router.post("/embeddings")
async def create_embeddings(request: Request, body: EmbeddingCreate):
    target = await resolve_target(request, body.model)
    if target is not None:
        raise ApiError(400, f"'{body.model}' is an agent; embeddings take a provider model.", param="model")
    query = EmbeddingRequest(
        id=new_id("emb"),
        model=body.model,
        input=body.input,
        dimensions=body.dimensions,
        user=body.user,
        principal=principal(request),
        project=caller(request).project,
    )
    # a provider's retries, or a local model's first load, take longer than a bus request usually may
    result = await bus(request).call(subjects.EMBEDDINGS, query, Embeddings, wait_s=EMBEDDING_WAIT_S)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encoded(v, body.encoding_format)}
            for i, v in enumerate(result.vectors)
        ],
        "model": body.model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }
