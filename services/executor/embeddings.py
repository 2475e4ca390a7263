"""Embeddings for `/v1/embeddings` and for indexing files: through litellm for provider models, on
this machine's CPU for `local/` models (`local_embeddings.py`). The executor is where provider calls,
keys and retries live, so the edge asks it rather than calling providers."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client

from ossabus.contracts.agent import RetryPolicy
from ossabus.contracts.bus import EmbeddingRequest, Embeddings
from ossabus.executor import llm, local_embeddings
from ossabus.executor import usage as usage_reports
from ossabus.executor.chat import bus_error
from ossabus.runtime.bus import BusFailure

RETRY = RetryPolicy(max_attempts=3, backoff="exponential", initial_delay_ms=200, max_delay_ms=2000)


async def embed(nc: Client, request: EmbeddingRequest) -> Embeddings:
    if local_embeddings.is_local(request.model):
        vectors, tokens = await _embed_locally(request)
        model = request.model
    else:
        model = llm.resolve_model(None, request.model)
        vectors, tokens = await _embed_by_provider(model, request)
    await usage_reports.report(
        nc,
        record_id=request.id,
        agent=None,
        model=model,
        kind="embeddings",
        principal=request.principal,
        project=request.project,
        usage={"prompt_tokens": tokens, "completion_tokens": 0},
    )
    return Embeddings(model=request.model, vectors=vectors, prompt_tokens=tokens)


async def _embed_locally(request: EmbeddingRequest) -> tuple[list[list[float]], int]:
    texts = [request.input] if isinstance(request.input, str) else request.input
    if not all(isinstance(t, str) for t in texts):
        raise BusFailure.of("invalid_request", "local models take text, not token ids", param="input")
    size = local_embeddings.dimensions_of(request.model)
    if request.dimensions is not None and size is not None and request.dimensions != size:
        raise BusFailure.of(
            "invalid_request", f"{request.model} gives {size} dimensions, not {request.dimensions}", param="dimensions"
        )
    try:
        return await local_embeddings.encode(request.model, texts)
    except local_embeddings.LocalModelUnavailable as unavailable:
        raise BusFailure.of("invalid_request", str(unavailable), param="model") from unavailable


async def _embed_by_provider(model: str, request: EmbeddingRequest) -> tuple[list[list[float]], int]:
    litellm = llm._litellm()
    params = {"dimensions": request.dimensions, "user": request.user}
    params = {k: v for k, v in params.items() if v is not None}
    attempt = 0
    while True:
        attempt += 1
        try:
            response = await asyncio.wait_for(
                litellm.aembedding(model=model, input=request.input, num_retries=0, **params),
                llm.idle_timeout_s() + llm.connect_timeout_s(),
            )
            break
        except Exception as exc:
            error = llm.classify(exc)
            if not error.transient or attempt >= RETRY.max_attempts:
                raise BusFailure(bus_error(error)) from exc
            await asyncio.sleep(llm.backoff_delay(RETRY, attempt))
    rows = sorted(response.data, key=lambda row: row["index"] if isinstance(row, dict) else row.index)
    vectors = [list(row["embedding"] if isinstance(row, dict) else row.embedding) for row in rows]
    tokens = int(getattr(response.usage, "prompt_tokens", 0) or 0) if response.usage else 0
    return vectors, tokens
