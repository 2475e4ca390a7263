"""`rewrite_query` of a vector store search: a model turns the user's question into a search
query (OpenAI does the same), through an executor's plain chat completion, so any provider works.
The model is `OSSABUS_REWRITE_MODEL`, else `OSSABUS_DEFAULT_MODEL`; with neither the request is
refused rather than searched unrewritten behind the caller's back."""

from __future__ import annotations

import os

from fastapi import Request

from ossabus.contracts import subjects
from ossabus.contracts.bus import ChatRequest
from ossabus.contracts.ids import new_id
from ossabus.relay.auth import caller, principal
from ossabus.relay.context import now
from ossabus.relay.errors import ApiError
from ossabus.relay.routes_chat import complete

REWRITE_MODEL_ENV = "OSSABUS_REWRITE_MODEL"
INSTRUCTIONS = (
    "Rewrite the user's text as a short search query for a document index: keep names, numbers and "
    "key terms, drop filler words. Answer with the query only."
)


def rewrite_model() -> str | None:
    return os.environ.get(REWRITE_MODEL_ENV) or os.environ.get("OSSABUS_DEFAULT_MODEL") or None


async def rewritten(request: Request, query: str) -> str:
    model = rewrite_model()
    if model is None:
        raise ApiError(
            400,
            "rewrite_query needs a model here: the operator sets OSSABUS_REWRITE_MODEL (or OSSABUS_DEFAULT_MODEL)",
            param="rewrite_query",
        )
    chat = ChatRequest(
        id=new_id("chatcmpl"),
        created=now(),
        model=model,
        messages=[{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": query}],
        params={"temperature": 0},
        principal=principal(request),
        project=caller(request).project,
    )
    answer = await complete(request.app.state.broker.connection, subjects.chat(subjects.PLAIN_LLM_AGENT), chat)
    text = ((answer.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
    return text.strip().strip('"') or query
