"""The Responses API: `POST /v1/responses` (streamed or not, in the background or not), retrieve
(and resume its stream), delete, cancel, input items, input token counts.

One run machinery: a response is a run on a thread, queued on the work queue like every run and
carried by the same executors, dispatcher, budgets and crash recovery; only its shape differs,
translated here at the edge. `previous_response_id` continues the thread of that response (a copy
of it up to that response when the chain forks), `conversation` names a thread directly, and a
response answering function calls (or approvals) resumes the run that waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, format_sse_event

from ossabus.contracts import subjects
from ossabus.contracts.bus import ManifestRecord
from ossabus.contracts.ids import new_id
from ossabus.contracts.openai_objects import CodeInterpreterTool, FileSearchTool, Message, Run, Thread, ToolCallsDetails
from ossabus.registry.convert_openai import to_assistant
from ossabus.relay import budgets, routes_runs
from ossabus.relay.auth import DEFAULT_PROJECT, caller
from ossabus.relay.context import assistant_id, assistant_record, checked_id, now, state
from ossabus.relay.errors import ApiError
from ossabus.relay.responses.items import time_part
from ossabus.relay.responses.mcp_tools import as_function, request_mcp_tools
from ossabus.relay.responses.objects import response_object
from ossabus.relay.responses.requests import ReadInput, ResponseCreate, check_tools, read_input, require_model
from ossabus.relay.responses.stream import ResponseEvents
from ossabus.relay.routes_chat import resolve_target
from ossabus.relay.routes_files import file_or_404
from ossabus.relay.routes_runs import Follow
from ossabus.relay.routes_threads import thread_or_404
from ossabus.relay.run_stream import RunStream
from ossabus.store import answers
from ossabus.store.messages import text_message
from ossabus.store.responses import ResponseRecord, Responses
from ossabus.store.runs import new_run, plain_model_record

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["responses"])
ECHOED = (
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "parallel_tool_calls",
    "reasoning",
    "service_tier",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "metadata",
    "include",
)


def responses(request: Request) -> Responses:
    return request.app.state.responses


async def record_or_404(request: Request, response_id: str, param: str = "response_id") -> ResponseRecord:
    record = await responses(request).get(checked_id(response_id, "response", param))
    if record is None or record.project != caller(request).project:
        what = "Previous response" if param == "previous_response_id" else "Response"
        raise ApiError(404, f"{what} with id '{response_id}' not found.", param=param, code="not_found")
    return record


async def current_object(request: Request, record: ResponseRecord) -> dict[str, Any]:
    store = state(request)
    run = await store.get_run(record.thread_id, record.run_id)
    steps = await store.list_steps(record.thread_id, record.run_id) if run else []
    messages = {m.id: m for m in await store.list_messages(record.thread_id)} if run else {}
    return response_object(record, run, steps, messages)


# --- create ------------------------------------------------------------------------------------------


@router.post("/responses")
async def create_response(request: Request, body: ResponseCreate):
    require_model(body.model)
    if body.background and body.store is False:
        raise ApiError(400, "background responses must be stored: store cannot be false.", param="store")
    tools = check_tools(body.tools)
    target = await resolve_target(request, body.model)
    if target is not None and target.kind != "Agent":
        raise ApiError(400, f"'{body.model}' is a {target.kind}, not an agent.", param="model", code="invalid_value")
    record = await assistant_record(request, assistant_id(target)) if target is not None else None
    await budgets.check(request, record.definition if record else None, assistant_id(target) if target else None)
    thread, waiting, branch = await history_for(request, body)
    pending = answers.pending_calls(waiting) if waiting else []
    read = read_input(body.input, set(pending))
    if waiting is not None:
        return await continue_run(request, body, record, thread, waiting, read, tools)
    return await start_response(request, body, record, thread, read, tools, branch)


async def history_for(request: Request, body: ResponseCreate) -> tuple[Thread | None, Run | None, Run | None]:
    """The thread the response runs on (None: a new one, made once the request is known to be good),
    the run of it that waits for this input (if any), and the run to fork the thread at when the
    response chains on an earlier response than the thread's latest."""
    store = state(request)
    if body.previous_response_id:
        previous = await record_or_404(request, body.previous_response_id, "previous_response_id")
        thread = await store.get_thread(previous.thread_id)
        run = await store.get_run(previous.thread_id, previous.run_id)
        if thread is None or run is None or not previous.store:
            raise ApiError(
                404,
                f"Previous response with id '{previous.id}' not found.",
                param="previous_response_id",
                code="not_found",
            )
        if run.status == "requires_action" and await store.active_run(thread.id) == run.id:
            return thread, run, None
        if not run.terminal and run.status != "requires_action":
            raise ApiError(
                400,
                f"Previous response with id '{previous.id}' is still in progress.",
                param="previous_response_id",
                code="invalid_state",
            )
        runs = await store.list_runs(thread.id)
        if runs and runs[-1].id != run.id:
            return thread, None, run
        return thread, None, None
    conversation = body.conversation_id
    if conversation:
        thread = await thread_or_404(request, conversation)
        active = await store.active_run(thread.id)
        run = await store.get_run(thread.id, active) if active else None
        if run is not None and run.status == "requires_action":
            return thread, run, None
        return thread, None, None
    return None, None, None


async def fork(request: Request, thread: Thread, upto: Run) -> Thread:
    """A new thread holding the conversation as it stood when `upto` ended: a response chained on
    an earlier response than the thread's latest starts a branch, as at OpenAI."""
    store = state(request)
    steps = await store.list_steps(thread.id, upto.id)
    mine = [m for m in await store.list_messages(thread.id) if m.run_id == upto.id]
    cut = max([time_part(upto.id)] + [time_part(s.id) for s in steps] + [time_part(m.id) for m in mine])
    copy = Thread(
        id=new_id("thread"),
        created_at=now(),
        metadata={**thread.metadata, "forked_from": thread.id},
        project=thread.project,
    )
    await store.create_thread(copy)
    for message in await store.list_messages(thread.id):
        if time_part(message.id) <= cut and message.status != "in_progress":
            await store.put_message(
                message.model_copy(update={"id": new_id("msg"), "thread_id": copy.id, "run_id": None})
            )
    return copy


def input_messages(thread_id: str, read: ReadInput) -> list[Message]:
    out = []
    for role, text, chat in read.entries:
        message = text_message(thread_id, role, text)
        if chat:
            message.chat = chat
        out.append(message)
    return out


def stored_items(read: ReadInput, messages: list[Message]) -> list[dict[str, Any]]:
    """The input items with ids: a message item is named after the thread message it became."""
    message_ids = iter(m.id for m in messages if m.role == "user" or m.chat is None)
    out = []
    for item in read.items:
        item = dict(item)
        if item.get("type") == "message" and item.get("role") in ("user", "assistant"):
            item.setdefault("id", next(message_ids, new_id("msg")))
            item.setdefault("status", "completed")
            if isinstance(item.get("content"), str):
                item["content"] = [{"type": "input_text", "text": item["content"]}]
        elif item.get("type") == "message":
            item.setdefault("id", new_id("msg"))
            item.setdefault("status", "completed")
            if isinstance(item.get("content"), str):
                item["content"] = [{"type": "input_text", "text": item["content"]}]
        elif item.get("type") == "function_call_output":
            item.setdefault("id", "fco_" + str(item.get("call_id", "")).removeprefix("call_"))
            item.setdefault("status", "completed")
        else:
            item.setdefault("id", new_id("item"))
        out.append(item)
    return out


def run_params(body: ResponseCreate, read: ReadInput, record: ManifestRecord, tools: list[dict]) -> dict[str, Any]:
    """The request in OpenAI run-create terms (what `new_run` takes), over the agent's own settings."""
    params: dict[str, Any] = {}
    extra = [text for text in [body.instructions, *read.system] if text]
    if extra:
        params["additional_instructions"] = "\n\n".join(extra)
    agent_tools = [
        t.model_dump(mode="json", exclude_none=True) for t in to_assistant(record.definition, created_at=0).tools
    ]
    client = [
        {
            "type": "function",
            "function": {
                k: v
                for k, v in {
                    "name": t["name"],
                    "description": t.get("description"),
                    "parameters": t.get("parameters"),
                    "strict": t.get("strict"),
                }.items()
                if v is not None
            },
        }
        for t in tools
        if t.get("type") == "function"
    ]
    names = {t["function"]["name"] for t in client}
    params["tools"] = [t for t in agent_tools if t.get("function", {}).get("name") not in names] + client
    fmt = body.text.format if body.text else None
    if fmt is not None and fmt.type == "json_object":
        params["response_format"] = {"type": "json_object"}
    elif fmt is not None and fmt.type == "json_schema":
        schema = {"name": fmt.name, "schema": fmt.schema_, "strict": fmt.strict}
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {k: v for k, v in schema.items() if v is not None},
        }
    if body.max_output_tokens is not None:
        params["max_completion_tokens"] = body.max_output_tokens
    for key in ("temperature", "top_p", "parallel_tool_calls", "metadata"):
        value = getattr(body, key)
        if value is not None:
            params[key] = value
    if body.tool_choice is not None:
        params["tool_choice"] = chat_tool_choice(body.tool_choice)
    return params


def chat_tool_choice(choice: str | dict[str, Any]) -> Any:
    """Responses' `tool_choice` in chat terms: "auto" / "none" / "required", or one named function."""
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise ApiError(400, "tool_choice is auto, none, required or a tool", param="tool_choice")
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    if choice.get("type") == "allowed_tools":
        return choice.get("mode", "auto")
    raise ApiError(400, f"tool_choice type {choice.get('type')!r} is not supported", param="tool_choice")


def agent_mcp_labels(record: ManifestRecord) -> dict[str, str]:
    """The server label of each MCP tool the manifest names (the MCP server it belongs to)."""
    labels = {}
    for tool in record.definition.tools:
        if tool.mcp is not None and (tool.mcp.server or tool.mcp.url):
            labels[tool.function_name or tool.name] = tool.mcp.server or urlsplit(tool.mcp.url or "").hostname or "mcp"
    return labels


def provider_params(body: ResponseCreate) -> dict[str, Any]:
    out: dict[str, Any] = {
        "reasoning_effort": body.reasoning.effort if body.reasoning else None,
        "service_tier": body.service_tier,
        "user": body.safety_identifier or body.user,
        "prompt_cache_key": body.prompt_cache_key,
    }
    if body.top_logprobs:
        out |= {"logprobs": True, "top_logprobs": body.top_logprobs}
    return {k: v for k, v in out.items() if v is not None}


def new_record(
    request: Request, body: ResponseCreate, thread: Thread, run: Run, record: ManifestRecord | None, tools: list[dict]
) -> ResponseRecord:
    echoed = body.model_dump(include=set(ECHOED), exclude_none=True, mode="json", by_alias=True)
    echoed["tools"] = [
        {"strict": None, "parameters": None, **tool} if tool.get("type") == "function" else tool for tool in tools
    ]
    return ResponseRecord(
        id=new_id("resp"),
        project=caller(request).project or DEFAULT_PROJECT,
        created_at=now(),
        thread_id=thread.id,
        run_id=run.id,
        model=body.model or "",
        agent=record.name if record and record.name != subjects.PLAIN_LLM_AGENT else None,
        request=echoed,
        client_tools=[t["name"] for t in tools if t.get("type") == "function"],
        previous_response_id=body.previous_response_id,
        conversation=body.conversation_id,
        store=body.store is not False,
        background=bool(body.background),
    )


async def start_response(
    request: Request,
    body: ResponseCreate,
    record: ManifestRecord | None,
    thread: Thread | None,
    read: ReadInput,
    tools: list[dict],
    branch: Run | None,
):
    store = state(request)
    if not read.entries and not read.items:
        raise ApiError(400, "Give `input`: a string or a list of input items.", param="input")
    agent = record or plain_model_record(body.model or "")
    params = run_params(body, read, agent, tools)
    mcp = await request_mcp_tools(request, tools)
    params["tools"] += [as_function(t) for t in mcp.tools]
    run = new_run("pending", agent, params)
    run.request_tools = [t.model_dump(mode="json") for t in mcp.tools]
    run.provider_params = provider_params(body)
    run.max_tool_calls = body.max_tool_calls
    searched = next((t for t in tools if t.get("type") == "file_search"), None)
    if searched is not None:
        run.tools = [*(t for t in run.tools if t.type != "file_search"), FileSearchTool()]
        run.file_search_scope = {k: v for k, v in searched.items() if k != "type"}
    interpreted = next((t for t in tools if t.get("type") == "code_interpreter"), None)
    if interpreted is not None:
        container = dict(interpreted.get("container") or {"type": "auto"})
        for i, file_id in enumerate(container.get("file_ids") or []):
            try:
                await file_or_404(request, file_id)
            except ApiError as missing:
                missing.param = f"tools.container.file_ids[{i}]"
                raise
        run.tools = [*(t for t in run.tools if t.type != "code_interpreter"), CodeInterpreterTool(container=container)]
    if record is None:
        run.direct_model = body.model
        run.model = body.model or run.model
    if thread is None:
        metadata = {"responses": "true"}
        thread = Thread(id=new_id("thread"), created_at=now(), metadata=metadata, project=caller(request).project)
        await store.create_thread(thread)
    elif branch is not None:
        thread = await fork(request, thread, branch)
    run = run.model_copy(update={"thread_id": thread.id})
    holder = await store.claim_thread(thread.id, run.id)
    if holder is not None:
        raise ApiError(
            409,
            f"Another response is in progress on conversation {thread.id} ({holder}).",
            param="conversation",
            code="conversation_locked",
        )
    messages = input_messages(thread.id, read)
    for message in messages:
        await store.put_message(message)
    response = new_record(request, body, thread, run, record, tools)
    response.input_items = stored_items(read, messages)
    response.mcp_labels = {**agent_mcp_labels(agent), **mcp.labels}
    response.list_items = mcp.list_items
    run.response_id = response.id
    await store.put_run(run)
    await responses(request).create(response)
    return await deliver(
        request,
        body,
        response,
        lambda follow: routes_runs.launch(
            request,
            run,
            agent,
            attempt=1,
            stream=follow is not None,
            before=["thread.run.created", "thread.run.queued"],
            follow=follow,
        ),
    )


async def continue_run(
    request: Request,
    body: ResponseCreate,
    record: ManifestRecord | None,
    thread: Thread,
    run: Run,
    read: ReadInput,
    tools: list[dict],
):
    """Input that answers the calls a run waits on resumes that run, as a new response."""
    store = state(request)
    pending = answers.pending_calls(run)
    assert run.required_action is not None
    kind = run.required_action.type
    answered = read.outputs if kind == "submit_tool_outputs" else read.decisions
    missing = [call_id for call_id in pending if call_id not in answered]
    if missing:
        what = "tool output" if kind == "submit_tool_outputs" else "approval response"
        raise ApiError(400, f"No {what} found for function call {missing[0]}.", param="input")
    for message in input_messages(thread.id, read):
        await store.put_message(message)
    previous = await latest_response_of(request, run)
    steps = await store.list_steps(thread.id, run.id)
    response = new_record(request, body, thread, run, record, tools or [])
    if previous is not None:
        response.client_tools = sorted(set(previous.client_tools) | set(response.client_tools))
        response.mcp_labels = previous.mcp_labels
        response.request["tools"] = response.request.get("tools") or previous.request.get("tools") or []
        final = await current_object(request, previous)
        await responses(request).update(previous.id, lambda r: r.model_copy(update={"final": final}))
    open_step = next((s for s in reversed(steps) if s.type == "tool_calls" and s.status == "in_progress"), None)
    response.steps_before = [s.id for s in steps if s is not open_step]
    if open_step is not None and isinstance(open_step.step_details, ToolCallsDetails):
        still_to_run = set() if kind == "submit_tool_outputs" else set(pending)
        response.calls_before = [c.id for c in open_step.step_details.tool_calls if c.id not in still_to_run]
    response.usage_before = run.usage.model_dump() if run.usage else {}
    response.events_after = await last_event_sequence(request, run)
    response.input_items = stored_items(read, [])
    await responses(request).create(response)
    run = await store.update_run(thread.id, run.id, lambda r: r.model_copy(update={"response_id": response.id})) or run

    async def resume(follow: Follow | None):
        following = follow is not None
        if kind == "submit_tool_outputs":
            return await routes_runs.apply_tool_outputs(request, run, read.outputs, following, follow)
        return await routes_runs.apply_tool_approvals(request, run, read.decisions, following, follow)

    return await deliver(request, body, response, resume)


async def latest_response_of(request: Request, run: Run) -> ResponseRecord | None:
    return await responses(request).get(run.response_id) if run.response_id else None


async def last_event_sequence(request: Request, run: Run) -> int | None:
    js = request.app.state.broker.connection.jetstream()
    try:
        msg = await js.get_last_msg(subjects.EVENTS_STREAM, subjects.run_events_in_thread(run.thread_id, run.id))
    except Exception:  # no event yet, or a server without wildcard last-by-subject
        return None
    return msg.seq


# --- delivering: stream, wait, or return at once (background) -----------------------------------------


async def deliver(request: Request, body: ResponseCreate, record: ResponseRecord, launch) -> Response | dict:
    """Queue the run (`launch(follow)`) and answer: its stream, its end, or at once (background,
    polled or streamed later). `follow` turns the run's event stream, opened before the run is
    queued, into the answer; None queues without following."""
    if body.background and not body.stream:
        await launch(None)
        return await current_object(request, record)
    if body.stream:
        return await launch(lambda handle: stream_response(request, record, handle))
    ended = asyncio.get_running_loop().create_future()
    await launch(ended.set_result)  # the run's event stream: read it to its end here
    await wait_for_end(await ended)
    obj = await current_object(request, record)
    if not record.store:
        await forget(request, record)
    return obj


async def wait_for_end(handle: RunStream) -> None:
    try:
        async for _ in handle.events():
            pass
    finally:
        await handle.close()


async def forget(request: Request, record: ResponseRecord) -> None:
    """`store: false`: nothing of the response stays once it is answered."""
    await responses(request).delete(record.id)
    if record.conversation is None and record.previous_response_id is None:
        await state(request).delete_thread(record.thread_id)


def stream_response(request: Request, record: ResponseRecord, handle: RunStream) -> EventSourceResponse:
    return sse(request, record, translated(request, record, handle, None))


def sse(request: Request, record: ResponseRecord, events: AsyncIterator[dict | None]) -> EventSourceResponse:
    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                if event is None:
                    yield format_sse_event(comment="keep-alive")
                else:
                    yield format_sse_event(event=event["type"], data_str=json.dumps(event))
        finally:
            if not record.store:
                with contextlib.suppress(Exception):
                    await forget(request, record)

    return EventSourceResponse(body(), headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


async def translated(
    request: Request, record: ResponseRecord, handle: RunStream, starting_after: int | None
) -> AsyncIterator[dict | None]:
    """The run's events as Responses events, from the first (numbered from 0) or after `starting_after`."""
    snapshot = await current_object(request, record) if record.final is None else dict(record.final)
    snapshot = {**snapshot, "status": "queued" if record.background else "in_progress", "output": []}
    snapshot.pop("usage", None)
    snapshot["completed_at"] = None
    snapshot["error"] = None
    snapshot["incomplete_details"] = None
    events = ResponseEvents(record, snapshot, shown=set(record.calls_before))

    def wanted(batch: list[dict]) -> list[dict]:
        return [e for e in batch if starting_after is None or e["sequence_number"] > starting_after]

    try:
        for event in wanted(events.start()):
            yield event
        ending = None
        async for item in handle.events():
            if item is None:
                yield None
                continue
            _, run_event = item
            for event in wanted(events.feed(run_event.event, run_event.data)):
                yield event
            ending = events.ending(run_event.event)
            if ending is not None:
                break
        final = await current_object(request, record)
        error = final.get("error") if ending == "response.failed" and final.get("status") == "failed" else None
        for event in wanted(events.finish(ending or "response.failed", final, error)):
            yield event
    finally:
        await handle.close()


# --- retrieve, resume, delete, cancel, input items ---------------------------------------------------


@router.get("/responses/{response_id}")
async def get_response(
    request: Request,
    response_id: str,
    stream: bool = False,
    starting_after: int | None = Query(None, ge=-1),
    include: Annotated[list[str] | None, Query()] = None,
    include_obfuscation: bool | None = None,
):
    record = await record_or_404(request, response_id)
    # what this read includes (`include` or the SDK's `include[]`), not what the create asked for
    asked = (include or []) + request.query_params.getlist("include[]")
    record = record.model_copy(update={"request": {**record.request, "include": asked}})
    if not stream:
        return await current_object(request, record)
    run = await state(request).get_run(record.thread_id, record.run_id)
    if run is None:
        raise ApiError(404, f"Response with id '{response_id}' not found.", param="response_id", code="not_found")
    js = request.app.state.broker.connection.jetstream()
    status = run.status
    if record.final is not None:
        status = "completed"  # a later response continues the run: this one's events ended at its wait
    handle = await RunStream.replay(js, run.thread_id, run.id, record.events_after, status)
    return sse(request, record, translated(request, record, handle, starting_after))


@router.delete("/responses/{response_id}")
async def delete_response(request: Request, response_id: str):
    record = await record_or_404(request, response_id)
    await responses(request).delete(record.id)
    return {"id": record.id, "object": "response", "deleted": True}


@router.post("/responses/{response_id}/cancel")
async def cancel_response(request: Request, response_id: str):
    record = await record_or_404(request, response_id)
    if not record.background:
        raise ApiError(400, "Only responses created with background=true can be cancelled.", param="response_id")
    run = await state(request).get_run(record.thread_id, record.run_id)
    if run is not None and not run.terminal and run.status != "cancelling":
        await routes_runs.cancel(request, run)
        for _ in range(int(CANCEL_WAIT_S / 0.05)):  # the executor notices within a moment
            run = await state(request).get_run(record.thread_id, record.run_id)
            if run is None or run.terminal:
                break
            await asyncio.sleep(0.05)
    return await current_object(request, record)


CANCEL_WAIT_S = 5.0


@router.get("/responses/{response_id}/input_items")
async def input_items(
    request: Request,
    response_id: str,
    limit: int = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    before: str | None = None,
    include: Annotated[list[str] | None, Query()] = None,
):
    from ossabus.relay.pagination import paginate

    record = await record_or_404(request, response_id)
    return paginate(
        record.input_items, lambda i: i["id"], lambda i: i, limit=limit, order=order, after=after, before=before
    )
