"""The Vercel AI SDK's endpoints: `/api/chat` (useChat) with resumable streams, `/api/completion`
(useCompletion) and `/api/generate-object`.

A chat id is a thread (`thread_` + a hash of the id), so a conversation persists on the server and
any relay serves it; the thread's runs carry the answers. What the client sends is read for what is
new only: the user's new message, the outputs of client-side tools (which resume the waiting run),
or a person's approvals; earlier messages are taken once, when the chat is first seen.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from jsonschema import Draft202012Validator, SchemaError
from jsonschema.validators import validator_for

from ossabus.contracts import subjects
from ossabus.contracts.bus import ChatRequest, ManifestListItem
from ossabus.contracts.ids import derived_id, new_id
from ossabus.contracts.openai_objects import (
    Message,
    Run,
    RunStep,
    Thread,
    ToolCallsDetails,
)
from ossabus.relay import budgets, routes_runs
from ossabus.relay.auth import DEFAULT_PROJECT, caller, principal
from ossabus.relay.context import assistant_id, now, state
from ossabus.relay.errors import ApiError
from ossabus.relay.openai_requests import RunOptions
from ossabus.relay.routes_chat import complete, open_chat_stream
from ossabus.relay.run_stream import RunStream
from ossabus.relay.vercel.chat_requests import (
    ChatBody,
    CompletionBody,
    GenerateObjectBody,
    IncomingMessage,
    generation,
    read_message,
)
from ossabus.relay.vercel.streams import protocol_for, run_response, text_response
from ossabus.relay.vercel.ui_chunks import parse_input, tool_error, tool_output
from ossabus.store import answers
from ossabus.store.messages import text_message

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["vercel"])
UI_ID = "ui_message_id"
REPLACED = "vercel_replaced"  # run metadata: a regenerate replaced its answer


def chat_message(thread_id: str, role: str, text: str, ui_id: str | None) -> Message:
    """A message of the web chat, remembering the SDK's own id for it."""
    return text_message(thread_id, role, text, metadata={UI_ID: ui_id} if ui_id else None)


def chat_thread_id(request: Request, chat_id: str) -> str:
    """One chat id = one thread per project: two projects that pick the same chat id (the SDK's ids are
    short) get two threads, and neither can reach the other's."""
    project = caller(request).project
    scope = f"vercel-chat:{chat_id}" if project == DEFAULT_PROJECT else f"vercel-chat:{project}:{chat_id}"
    return derived_id("thread", scope)


async def agent_for(request: Request, *names: str | None) -> ManifestListItem:
    """The agent named by `?agent=`, or the body's `agent` / `model` (a name or an assistant id)."""
    name = request.query_params.get("agent") or next((n for n in names if n), None)
    if not name:
        raise ApiError(400, "Name the agent: `agent` in the body, or ?agent=NAME.", param="agent", code="missing_agent")
    for item in await request.app.state.catalog.items():
        if item.kind == "Agent" and name in (item.name, assistant_id(item)):
            return item
    raise ApiError(404, f"No agent named '{name}'.", param="agent", code="agent_not_found")


# --- /api/chat ------------------------------------------------------------------------------------


@router.post("/chat")
async def chat(request: Request, body: ChatBody):
    item = await agent_for(request, body.agent, body.model)
    protocol = protocol_for(request, item.definition, generation(body))
    incoming = [read_message(m, i) for i, m in enumerate(body.messages)]
    last = incoming[-1]
    chat_id = body.id or new_id("chat")
    thread_id = chat_thread_id(request, chat_id)
    store = state(request)
    if await store.get_thread(thread_id) is None:
        metadata = {"vercel_chat_id": chat_id[:512], "agent": item.name}
        thread = Thread(id=thread_id, created_at=now(), metadata=metadata, project=caller(request).project)
        await store.create_thread(thread)
        for earlier in incoming[:-1]:
            if earlier.text and earlier.role in ("user", "assistant"):
                await store.put_message(chat_message(thread_id, earlier.role, earlier.text, earlier.ui_id))
    waiting = await _waiting_run(request, thread_id)

    def follow(handle: RunStream) -> Response:
        return run_response(handle, protocol)

    if body.trigger == "regenerate-message":
        _refuse_if_busy(waiting)
        await _drop_last_answer(request, thread_id)
        return await _start(request, thread_id, item, follow)
    if last.role == "assistant" and (last.tool_outputs or last.approvals):
        return await _answer(request, waiting, last, follow)
    if last.role != "user" or not last.text:
        raise ApiError(
            400,
            "The last message must be the user's new message (with text), or the assistant's with tool results.",
            param=f"messages[{len(incoming) - 1}]",
            code="invalid_value",
        )
    _refuse_if_busy(waiting)
    if not await _already_stored(request, thread_id, last.ui_id):
        await store.put_message(chat_message(thread_id, "user", last.text, last.ui_id))
    return await _start(request, thread_id, item, follow)


async def _waiting_run(request: Request, thread_id: str) -> Run | None:
    active = await state(request).active_run(thread_id)
    return await state(request).get_run(thread_id, active) if active else None


def _refuse_if_busy(run: Run | None) -> None:
    if run is None or run.terminal:
        return
    hint = " Send the results of its tool calls first." if run.status == "requires_action" else ""
    raise ApiError(409, f"This chat already has an active run {run.id}.{hint}", param="id", code="run_active")


async def _already_stored(request: Request, thread_id: str, ui_id: str | None) -> bool:
    """A retried request carries the same message again: store it once."""
    if not ui_id:
        return False
    return any(m.metadata.get(UI_ID) == ui_id for m in await state(request).list_messages(thread_id))


async def _drop_last_answer(request: Request, thread_id: str) -> None:
    """Regenerate: the assistant messages after the last user message go, and their runs are marked
    replaced (kept, as runs are, but no longer part of the conversation); the user's message stays."""
    store = state(request)
    messages = await store.list_messages(thread_id)
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    dropped = messages[last_user + 1 :]
    for message in dropped:
        await store.delete_message(thread_id, message.id)
    for run_id in {m.run_id for m in dropped if m.run_id}:
        await store.update_run(
            thread_id, run_id, lambda r: r.model_copy(update={"metadata": {**r.metadata, REPLACED: "true"}})
        )


async def _start(request: Request, thread_id: str, item: ManifestListItem, follow) -> Response:
    options = RunOptions(assistant_id=assistant_id(item), stream=True)
    return await routes_runs.start(request, thread_id, options, follow=follow)


async def _answer(request: Request, run: Run | None, last: IncomingMessage, follow) -> Response:
    """Client-side tool results (`addToolOutput`) or approvals resume the run that waits for them."""
    if run is None or run.status != "requires_action" or run.required_action is None:
        raise ApiError(409, "No run of this chat waits for tool results.", param="messages", code="invalid_state")
    expected = answers.pending_calls(run)
    if run.required_action.type == "submit_tool_approvals":
        decisions = {call_id: last.approvals[call_id] for call_id in expected if call_id in last.approvals}
        _complete_answers(expected, decisions, "approval")
        return await routes_runs.apply_tool_approvals(request, run, decisions, True, follow)
    outputs = {call_id: last.tool_outputs[call_id] for call_id in expected if call_id in last.tool_outputs}
    _complete_answers(expected, outputs, "tool result")
    return await routes_runs.apply_tool_outputs(request, run, outputs, True, follow)


def _complete_answers(expected: list[str], given: dict, what: str) -> None:
    missing = [call_id for call_id in expected if call_id not in given]
    if missing:
        raise ApiError(400, f"The run waits for a {what} for each of {expected}; missing: {missing}.", param="messages")


@router.get("/chat/{chat_id}/stream")
async def resume_chat_stream(request: Request, chat_id: str):
    """The active run's stream from its first event (204 when nothing is streaming): how useChat's
    `resume` picks up after a reload or a dropped connection."""
    thread_id = chat_thread_id(request, chat_id)
    run = await _waiting_run(request, thread_id)
    if run is None or run.terminal or run.status == "requires_action":
        return Response(status_code=204)
    js = request.app.state.broker.connection.jetstream()
    handle = await RunStream.replay(js, thread_id, run.id, None, run.status)
    return run_response(handle, protocol_for(request, None))


@router.get("/chat/{chat_id}/messages")
async def chat_messages(request: Request, chat_id: str):
    """The conversation as UIMessages (AI SDK 5+), for a page that reloads: user messages, and one
    assistant message per run with its text and tool parts."""
    thread_id = chat_thread_id(request, chat_id)
    store = state(request)
    if await store.get_thread(thread_id) is None:
        return {"id": chat_id, "messages": []}
    messages = await store.list_messages(thread_id)
    by_id = {m.id: m for m in messages}
    runs = {run.id: run for run in await store.list_runs(thread_id) if run.metadata.get(REPLACED) != "true"}
    steps = {run_id: await store.list_steps(thread_id, run_id) for run_id in runs}
    out: list[dict[str, Any]] = []
    seen_runs: set[str] = set()
    for message in messages:
        if message.run_id is None:
            ui_id = message.metadata.get(UI_ID) or message.id
            out.append({"id": ui_id, "role": message.role, "parts": [{"type": "text", "text": message.text}]})
        elif message.run_id not in seen_runs and message.run_id in runs:
            seen_runs.add(message.run_id)
            out.append(_run_as_ui_message(message.run_id, steps[message.run_id], by_id))
    for run_id in runs:  # runs that only called tools so far
        if run_id not in seen_runs and steps[run_id]:
            out.append(_run_as_ui_message(run_id, steps[run_id], by_id))
    return {"id": chat_id, "messages": out, "status": _chat_status(runs)}


def _chat_status(runs: dict[str, Run]) -> str:
    latest = max(runs.values(), key=lambda r: r.created_at, default=None)
    return latest.status if latest else "none"


def _run_as_ui_message(run_id: str, steps: list[RunStep], messages: dict[str, Message]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for step in steps:
        parts.append({"type": "step-start"})
        details = step.step_details
        if isinstance(details, ToolCallsDetails):
            parts.extend(_tool_part(call) for call in details.tool_calls)
        else:
            message = messages.get(details.message_creation["message_id"])
            if message is not None and message.text:
                parts.append({"type": "text", "text": message.text, "state": "done"})
    return {"id": run_id, "role": "assistant", "parts": parts}


def _tool_part(call) -> dict[str, Any]:
    """A tool call as the AI SDK's tool UI part, in the state its step left it."""
    part: dict[str, Any] = {
        "type": f"tool-{call.function.name}",
        "toolCallId": call.id,
        "input": parse_input(call.function.arguments),
    }
    approval = call.approval
    if approval is not None:
        part["approval"] = {"id": call.id}
        if approval.status != "pending":
            part["approval"].update(approved=approval.status == "approved", reason=approval.reason)
    output = call.function.output
    error = tool_error(output) if output is not None else None
    if output is None:
        pending = approval is not None and approval.status == "pending"
        part["state"] = "approval-requested" if pending else "input-available"
    elif error is not None and error[0] == "denied":
        part["state"] = "output-denied"
    elif error is not None:
        part.update(state="output-error", errorText=f"{error[0]}: {error[1]}")
    else:
        part.update(state="output-available", output=tool_output(output))
    return part


# --- /api/completion and /api/generate-object -------------------------------------------------------


async def _chat_request(
    request: Request, item: ManifestListItem, messages: list[dict[str, Any]], params: dict[str, Any]
) -> ChatRequest:
    await budgets.check(request, item.definition)
    return ChatRequest(
        principal=principal(request),
        project=caller(request).project,
        id=new_id("chatcmpl"),
        created=now(),
        agent=item.name,
        agent_version=item.version,
        model=item.name,
        messages=messages,
        params=params,
    )


@router.post("/completion")
async def completion(request: Request, body: CompletionBody):
    """useCompletion: one answer to `prompt` from the agent, streamed (text or the SDK's data protocol)."""
    item = await agent_for(request, body.agent, body.model)
    protocol = protocol_for(request, item.definition)
    chat = await _chat_request(request, item, [{"role": "user", "content": body.prompt}], {})
    nc = request.app.state.broker.connection
    chunks = await open_chat_stream(nc, subjects.chat(item.name), chat)

    async def deltas() -> AsyncIterator[str | Exception]:
        async for chunk in chunks:
            if "ok" in chunk:
                if not chunk["ok"]:
                    yield RuntimeError(chunk["error"]["message"])
                return
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    yield content

    return text_response(deltas(), protocol, chat.id)


@router.post("/generate-object")
async def generate_object(request: Request, body: GenerateObjectBody):
    """generateObject: the agent answers with JSON that must match the given JSON Schema."""
    try:
        validator = validator_for(body.schema_, default=Draft202012Validator)(body.schema_)
        validator.check_schema(body.schema_)
    except SchemaError as exc:
        raise ApiError(400, f"schema is not a valid JSON Schema: {exc.message}", param="schema") from exc
    item = await agent_for(request, body.agent, body.agent_id, body.model)
    if body.messages:
        messages = [{"role": m.get("role", "user"), "content": m.get("content", "")} for m in body.messages]
    elif body.prompt:
        messages = [{"role": "user", "content": body.prompt}]
    else:
        raise ApiError(400, "Give `prompt` or `messages`.", param="prompt")
    response_format = {"type": "json_schema", "json_schema": {"name": "object", "schema": body.schema_}}
    chat = await _chat_request(request, item, messages, {"response_format": response_format})
    result = await complete(request.app.state.broker.connection, subjects.chat(item.name), chat)
    text = (result.get("choices") or [{}])[0].get("message", {}).get("content") or ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(502, "The model's answer is not JSON.", code="no_object_generated") from exc
    problems = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if problems:
        first = problems[0]
        raise ApiError(
            502,
            f"The model's object does not match the schema: {first.json_path}: {first.message}",
            code="no_object_generated",
        )
    return {"object": value, "finishReason": "stop", "usage": result.get("usage")}
