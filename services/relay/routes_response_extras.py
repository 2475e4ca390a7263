"""`POST /v1/responses/input_tokens` (what a request would cost before it is made) and
`POST /v1/responses/compact` (a long conversation shrunk to a summary a next request can start from).

Both read the conversation the way a response would: the previous response's or the conversation's
thread, then the new input. Counting is the executor's (it holds the tokenizers); compacting is one
model call through the executors, answered with plain message items the client passes on as
`input` (OpenAI answers with an encrypted item only its own models read; this one any model reads).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from ossabus.contracts import subjects
from ossabus.contracts.bus import ChatRequest, TokenCount, TokenCountRequest
from ossabus.contracts.ids import new_id
from ossabus.relay.auth import caller, principal
from ossabus.relay.context import bus, now, state
from ossabus.relay.errors import ApiError
from ossabus.relay.openai_requests import Strict
from ossabus.relay.responses.requests import ConversationRef, check_tools, read_input, require_model
from ossabus.relay.routes_chat import complete, resolve_target
from ossabus.relay.routes_responses import record_or_404
from ossabus.relay.routes_threads import thread_or_404

router = APIRouter(prefix="/v1/responses", tags=["responses"])

COMPACT_PROMPT = (
    "Summarise the conversation above for whoever continues it: the user's goals, every decision, "
    "fact, name, number and open question, and what was being done last. Write only the summary."
)


class HistoryQuery(Strict):
    model: str | None = None
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    truncation: str | None = None
    prompt_cache_key: str | None = None


async def conversation_messages(request: Request, body: HistoryQuery) -> list[dict[str, Any]]:
    """The chat messages a response to `body` would start from (before the agent's own prompt)."""
    thread_id = None
    if body.previous_response_id:
        thread_id = (await record_or_404(request, body.previous_response_id, "previous_response_id")).thread_id
    elif body.conversation:
        given = body.conversation if isinstance(body.conversation, str) else body.conversation.id
        thread_id = (await thread_or_404(request, given)).id
    messages: list[dict[str, Any]] = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
    if thread_id is not None:
        for message in await state(request).list_messages(thread_id):
            if message.status == "in_progress":
                continue
            messages.extend(message.chat or ([{"role": message.role, "content": message.text}] if message.text else []))
    read = read_input(body.input, set())
    messages += [{"role": "system", "content": text} for text in read.system]
    for role, text, chat in read.entries:
        messages.extend(chat or [{"role": role, "content": text}])
    return messages


def function_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {k: v for k, v in t.items() if k in ("name", "description", "parameters")}}
        for t in tools
        if t.get("type") == "function"
    ]


@router.post("/input_tokens")
async def input_tokens(request: Request, body: HistoryQuery):
    target = await resolve_target(request, require_model(body.model))
    messages = await conversation_messages(request, body)
    query = TokenCountRequest(
        model=body.model,
        agent=target.name if target else None,
        messages=messages,
        tools=function_tools(check_tools(body.tools)) or None,
    )
    counted = await bus(request).call(subjects.TOKEN_COUNT, query, TokenCount)
    return {"object": "response.input_tokens", "input_tokens": counted.input_tokens}


@router.post("/compact")
async def compact(request: Request, body: HistoryQuery):
    target = await resolve_target(request, require_model(body.model))
    messages = await conversation_messages(request, body)
    if not messages:
        raise ApiError(400, "There is nothing to compact: give `input` or `previous_response_id`.", param="input")
    chat = ChatRequest(
        id=new_id("chatcmpl"),
        created=now(),
        agent=target.name if target else None,
        agent_version=target.version if target else None,
        model=body.model,
        messages=[*messages, {"role": "user", "content": COMPACT_PROMPT}],
        params={},
        principal=principal(request),
        project=caller(request).project,
    )
    subject = subjects.chat(target.name if target else subjects.PLAIN_LLM_AGENT)
    result = await complete(request.app.state.broker.connection, subject, chat)
    summary = ((result.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
    usage = result.get("usage") or {}
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    kept = [m for m in messages if m.get("role") == "user" and isinstance(m.get("content"), str)][-1:]
    output = [
        {
            "id": new_id("msg"),
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_text", "text": f"Summary of the conversation so far:\n{summary}"}],
        },
        *(
            {
                "id": new_id("msg"),
                "type": "message",
                "role": "user",
                "status": "completed",
                "content": [{"type": "input_text", "text": m["content"]}],
            }
            for m in kept
        ),
    ]
    return {
        "id": new_id("resp"),
        "object": "response.compaction",
        "created_at": now(),
        "output": output,
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        },
    }
