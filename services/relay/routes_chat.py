"""`POST /v1/chat/completions`: an agent (by name) or a provider model, executed through the bus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from ossabus.contracts import subjects
from ossabus.contracts.bus import (
    PROVIDER_SPECIFIC_PARAMS,
    SAMPLING_PARAMS,
    BusError,
    ChatRequest,
    ManifestListItem,
)
from ossabus.contracts.ids import new_id
from ossabus.registry.providers import infer_provider
from ossabus.relay import budgets
from ossabus.relay.auth import caller, principal
from ossabus.relay.chat_compat import Shapes, restore_chunk, restore_completion, tools_and_choice
from ossabus.relay.chat_inbox import ChatStream, inbox_of
from ossabus.relay.context import now
from ossabus.relay.errors import ApiError
from ossabus.relay.event_stream import EventStream
from ossabus.relay.openai_requests import ChatCompletionCreate
from ossabus.runtime.bus import BusFailure
from ossabus.runtime.tracing import headers_with_context

router = APIRouter(prefix="/v1", tags=["chat"])
CHAT_TIMEOUT_S = 600
JSON = "application/json"
PASSED_PARAMS = (*SAMPLING_PARAMS, *PROVIDER_SPECIFIC_PARAMS)
DONE = b"data: [DONE]\n\n"


def sse_data(payload: bytes) -> bytes:
    """One server-sent event of serialized JSON (which holds no raw line break: one `data:` line)."""
    return b"data: " + payload + b"\n\n"


async def resolve_target(request: Request, model: str) -> ManifestListItem | None:
    """The agent the model names, or None for a provider model; 404 when it is neither."""
    for item in await request.app.state.catalog.items():
        if item.name == model and item.kind in ("Agent", "Task"):
            return item
    if "/" in model or infer_provider(model):
        return None
    raise ApiError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")


@router.post("/chat/completions")
async def chat_completions(request: Request, body: ChatCompletionCreate):
    agent = await resolve_target(request, body.model)
    await budgets.check(request, agent.definition if agent else None)
    params: dict[str, Any] = body.model_dump(include=set(PASSED_PARAMS), exclude_none=True)
    tools, choice, shapes = tools_and_choice(body)
    if choice is not None:
        params["tool_choice"] = choice
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    chat = ChatRequest.model_construct(  # built from the request FastAPI validated: no second validation
        id=new_id("chatcmpl"),
        created=now(),
        agent=agent.name if agent else None,
        agent_version=agent.version if agent else None,
        model=body.model,
        messages=[m.model_dump(exclude_none=True) for m in body.messages],
        params=params,
        tools=tools,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        principal=principal(request),
        project=caller(request).project,
    )
    subject = subjects.chat(agent.name if agent else subjects.PLAIN_LLM_AGENT)
    nc = request.app.state.broker.connection
    if not body.stream:
        return Response(orjson.dumps(restore_completion(await complete(nc, subject, chat), shapes)), media_type=JSON)
    return await _stream(nc, subject, chat, shapes)


async def complete(nc, subject: str, chat: ChatRequest) -> dict:
    """A non-streamed chat completion from an executor (also used by other routes, e.g. query rewriting)."""
    try:
        reply = await nc.request(subject, chat.encoded(), timeout=CHAT_TIMEOUT_S, headers=headers_with_context())
    except NoRespondersError as exc:
        raise BusFailure.of("unavailable", "no executor is running to serve chat completions") from exc
    except NatsTimeout as exc:
        raise BusFailure.of("unavailable", "the executor did not answer in time") from exc
    answer = orjson.loads(reply.data)  # the executor's own envelope: read, not validated again
    if not answer.get("ok"):
        raise BusFailure(
            BusError.model_validate(answer.get("error") or {"code": "internal_error", "message": "empty reply"})
        )
    return answer["result"]


class ChatChunks:
    """The chunks of one streamed chat completion, ending with the executor's closing envelope
    (`{"ok": true, "result": {...usage}}` or `{"ok": false, "error": ...}`); read once."""

    def __init__(self, nc, chat_id: str, stream: ChatStream, opening: dict) -> None:
        self.nc, self.chat_id, self.stream, self.opening = nc, chat_id, stream, opening
        self._telling: asyncio.Task | None = None

    async def __aiter__(self) -> AsyncIterator[dict]:
        message = self.opening
        try:
            while True:
                yield message
                if "ok" in message:
                    return
                message = orjson.loads((await self.stream.next(CHAT_TIMEOUT_S)).data)
        finally:
            self.stream.close()

    def abandon(self) -> None:
        """The client left: the reader stops waiting, and the executor is told to stop the model
        (chunks it sends meanwhile are dropped)."""
        self.stream.abandon()
        if self._telling is None:
            self._telling = asyncio.get_running_loop().create_task(self._tell_executor())

    async def _tell_executor(self) -> None:
        with contextlib.suppress(Exception):  # no bus: the executor's stream ends with its connection
            await self.nc.publish(subjects.chat_cancel(self.chat_id))


async def open_chat_stream(nc, subject: str, chat: ChatRequest) -> ChatChunks:
    """Hand a streamed chat request to an executor; failures before the first chunk raise here (so
    they become plain HTTP errors)."""
    stream = await inbox_of(nc).open()
    chat.stream_subject = stream.subject
    try:
        await nc.publish(subject, chat.encoded(), reply=stream.subject, headers=headers_with_context())
        first = await stream.next(CHAT_TIMEOUT_S)
    except TimeoutError as exc:
        stream.close()
        raise BusFailure.of("unavailable", "the executor did not answer in time") from exc
    except BaseException:
        stream.close()
        raise
    if first.headers and first.headers.get("Status") == "503":
        stream.close()
        raise BusFailure.of("unavailable", "no executor is running to serve chat completions")
    opening = orjson.loads(first.data)
    if "ok" in opening and not opening["ok"]:  # failed before the first chunk: a plain HTTP error
        stream.close()
        raise BusFailure(BusError.model_validate(opening["error"]))
    return ChatChunks(nc, chat.id, stream, opening)


async def _stream(nc, subject: str, chat: ChatRequest, shapes: Shapes | None = None):
    chunks = await open_chat_stream(nc, subject, chat)

    async def events():
        # one write per event, and the usage and `[DONE]` in one: each write is a send() to the socket
        async for message in chunks:
            if "ok" in message:  # the closing envelope
                ending = b""
                if not message["ok"]:
                    error = message["error"]
                    failure = {
                        "message": error["message"],
                        "type": "server_error",
                        "param": None,
                        "code": error["code"],
                    }
                    ending = sse_data(orjson.dumps({"error": failure}))
                elif chat.include_usage:
                    closing = {
                        "id": chat.id,
                        "object": "chat.completion.chunk",
                        "created": chat.created,
                        "model": chat.model,
                        "choices": [],
                        "usage": (message["result"] or {}).get("usage"),
                    }
                    ending = sse_data(orjson.dumps(closing))
                yield ending + DONE
                return
            if chat.include_usage:
                message.setdefault("usage", None)
            if shapes is not None:
                message = restore_chunk(message, shapes)
            yield sse_data(orjson.dumps(message))

    return EventStream(events(), on_disconnect=chunks.abandon)
