"""Response objects and their output items, built from the run that carries a response.

Everything is read from the store (run, steps, messages), so a response looks the same from every
relay and after any crash; the shapes are OpenAI's (`Response`, `OutputMessage`, `FunctionToolCall`,
`MCPToolCall`, `MCPApprovalRequest` in openapi.yaml). Built as plain dicts: this is on the path of
every poll and every streamed answer, and there is nothing to validate in what we wrote ourselves.

Calls the client runs (those a run waited on the client for) are `function_call` items; calls that ran on the
server (the agent's HTTP, MCP and worker tools) are `mcp_call` items with their output or error, the
form clients already know for calls made on their behalf, so no client tries to run them again.
"""

from __future__ import annotations

from typing import Any

from ossabus.contracts.openai_objects import Message, Run, RunStep, ToolCall, ToolCallsDetails
from ossabus.relay.vercel.ui_chunks import tool_error
from ossabus.store.responses import ResponseRecord

SERVER_LABEL = "ossabus"  # server_label of a server-side tool that is not an MCP server's

STATUS = {
    "queued": "queued",
    "in_progress": "in_progress",
    "cancelling": "in_progress",
    "requires_action": "completed",  # the model asked for function calls: this response is done
    "completed": "completed",
    "failed": "failed",
    "expired": "failed",
    "cancelled": "cancelled",
    "incomplete": "incomplete",
}


def item_id(prefix: str, call_id: str) -> str:
    """A call's item id, derived from its call id, so every view of it names the same item."""
    return prefix + "_" + call_id.removeprefix("call_")


def message_item(message: Message) -> dict[str, Any]:
    status = "in_progress" if message.status == "in_progress" else message.status
    annotations = output_annotations(
        [a for part in message.content if part.type == "text" for a in part.text.annotations], message.thread_id
    )
    return {
        "id": message.id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": message.text, "annotations": annotations, "logprobs": []}],
    }


def output_annotations(annotations: list[Any], thread_id: str | None = None) -> list[dict[str, Any]]:
    """A message's `file_citation` annotations (Assistants form, with the marker's span) in the
    Responses form: the file, its name (the marker's `†name`) and where in the text it is cited;
    `file_path` ones (files the code wrote) as `container_file_citation` of the thread's session."""
    out = []
    for a in annotations:
        if isinstance(a, dict) and a.get("type") == "file_path" and thread_id is not None:
            # a file the code interpreter wrote, named in the answer: OpenAI cites it from its container
            out.append(
                {
                    "type": "container_file_citation",
                    "container_id": container_id(thread_id),
                    "file_id": (a.get("file_path") or {}).get("file_id", ""),
                    "filename": str(a.get("text") or "").rsplit("/", 1)[-1],
                    "start_index": int(a.get("start_index") or 0),
                    "end_index": int(a.get("end_index") or 0),
                }
            )
            continue
        if not isinstance(a, dict) or a.get("type") != "file_citation":
            continue
        marker = str(a.get("text") or "")
        filename = marker.split("†", 1)[1].rstrip("】") if "†" in marker else ""
        out.append(
            {
                "type": "file_citation",
                "file_id": (a.get("file_citation") or {}).get("file_id", ""),
                "filename": filename,
                "index": int(a.get("start_index") or 0),
            }
        )
    return out


def file_search_item(call: ToolCall, with_results: bool) -> dict[str, Any]:
    """OpenAI's `file_search_call` item; `results` only under `include: ["file_search_call.results"]`."""
    details = call.file_search or {}
    results = None
    if with_results and call.function.output is not None:
        results = [
            {
                "file_id": r.get("file_id"),
                "filename": r.get("file_name"),
                "score": r.get("score"),
                "attributes": r.get("attributes") or {},
                "text": "".join(c.get("text", "") for c in r.get("content") or []),
            }
            for r in details.get("results") or []
        ]
    return {
        "id": item_id("fs", call.id),
        "type": "file_search_call",
        "status": "completed" if call.function.output is not None else "searching",
        "queries": list(details.get("queries") or []),
        "results": results,
    }


def container_id(thread_id: str) -> str:
    """The session a conversation's code runs in, named as OpenAI names containers."""
    return "cntr_" + thread_id.removeprefix("thread_")


def code_interpreter_item(call: ToolCall, thread_id: str, with_outputs: bool) -> dict[str, Any]:
    """OpenAI's `code_interpreter_call` item; `outputs` only under `include:
    ["code_interpreter_call.outputs"]` (null otherwise, as OpenAI answers). An image output's `url`
    is the File's content on this server."""
    details = call.code_interpreter or {}
    outputs = None
    if with_outputs and call.function.output is not None:
        outputs = [
            {"type": "logs", "logs": o.get("logs", "")}
            if o.get("type") == "logs"
            else {"type": "image", "url": f"/v1/files/{(o.get('image') or {}).get('file_id', '')}/content"}
            for o in details.get("outputs") or []
        ]
    return {
        "id": item_id("ci", call.id),
        "type": "code_interpreter_call",
        "status": "completed" if call.function.output is not None else "in_progress",
        "container_id": container_id(thread_id),
        "code": details.get("input") or None,
        "outputs": outputs,
    }


def wants_outputs(record: ResponseRecord) -> bool:
    return "code_interpreter_call.outputs" in (record.request.get("include") or [])


def wants_results(record: ResponseRecord) -> bool:
    return "file_search_call.results" in (record.request.get("include") or [])


def function_call_item(call: ToolCall, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id("fc", call.id),
        "type": "function_call",
        "call_id": call.id,
        "name": call.function.name,
        "arguments": call.function.arguments,
        "status": status,
    }


def mcp_call_item(call: ToolCall, label: str) -> dict[str, Any]:
    output = call.function.output
    error = tool_error(output) if output is not None else None
    item: dict[str, Any] = {
        "id": item_id("mcp", call.id),
        "type": "mcp_call",
        "server_label": label,
        "name": call.function.name,
        "arguments": call.function.arguments,
        "output": None if error else output,
        "error": {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": f"{error[0]}: {error[1]}"}]}
        if error
        else None,
        "status": "in_progress" if output is None else ("failed" if error else "completed"),
    }
    if call.approval is not None:
        item["approval_request_id"] = item_id("mcpr", call.id)
    return item


def approval_request_item(call: ToolCall, label: str) -> dict[str, Any]:
    return {
        "id": item_id("mcpr", call.id),
        "type": "mcp_approval_request",
        "server_label": label,
        "name": call.function.name,
        "arguments": call.function.arguments,
    }


def waiting_calls(run: Run | None) -> set[str]:
    """Calls the run waits on the client to run (they are this response's function calls)."""
    action = run.required_action if run is not None else None
    if action is None or action.submit_tool_outputs is None:
        return set()
    return {c.id for c in action.submit_tool_outputs.tool_calls}


def call_items(record: ResponseRecord, call: ToolCall, waiting: set[str]) -> list[dict[str, Any]]:
    if call.type == "file_search":
        return [file_search_item(call, wants_results(record))]
    if call.type == "code_interpreter":
        return [code_interpreter_item(call, record.thread_id, wants_outputs(record))]
    if call.client or call.id in waiting:
        return [function_call_item(call)]
    label = record.mcp_labels.get(call.function.name, SERVER_LABEL)
    approval = call.approval
    if approval is not None and approval.status == "pending":
        return [approval_request_item(call, label)]
    if approval is not None and approval.status == "denied":
        return [approval_request_item(call, label), mcp_call_item(call, label)]
    return [mcp_call_item(call, label)]


def output_items(
    record: ResponseRecord, steps: list[RunStep], messages: dict[str, Message], waiting: set[str]
) -> list[dict]:
    out: list[dict[str, Any]] = list(record.list_items)
    for step in steps:
        if step.id in record.steps_before:
            continue
        if step.reasoning and step.reasoning_id:
            summary = [{"type": "summary_text", "text": step.reasoning}]
            out.append({"id": step.reasoning_id, "type": "reasoning", "summary": summary})
        details = step.step_details
        if isinstance(details, ToolCallsDetails):
            for call in details.tool_calls:
                if call.id not in record.calls_before:
                    out.extend(call_items(record, call, waiting))
        else:
            message = messages.get(details.message_creation["message_id"])
            if message is not None and (message.text or message.status == "in_progress"):
                out.append(message_item(message))
    return out


def usage_of(run: Run, before: dict[str, int] | None = None) -> dict[str, Any] | None:
    if run.usage is None:
        return None
    before = before or {}
    prompt = run.usage.prompt_tokens - before.get("prompt_tokens", 0)
    completion = run.usage.completion_tokens - before.get("completion_tokens", 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def error_of(run: Run) -> dict[str, str] | None:
    if run.status == "expired":
        return {"code": "server_error", "message": "the response ran past its time limit"}
    if run.status != "failed":
        return None
    error = run.last_error
    code = error.code if error else "server_error"
    known = {"server_error", "rate_limit_exceeded", "invalid_prompt"}
    return {"code": code if code in known else "server_error", "message": error.message if error else "failed"}


def response_object(
    record: ResponseRecord,
    run: Run | None,
    steps: list[RunStep],
    messages: dict[str, Message],
) -> dict[str, Any]:
    """The response as OpenAI's API returns it."""
    if record.final is not None:
        return record.final
    req = record.request
    status = STATUS.get(run.status, "in_progress") if run else "failed"
    obj: dict[str, Any] = {
        "id": record.id,
        "object": "response",
        "created_at": record.created_at,
        "status": status,
        "background": record.background,
        "completed_at": (run.completed_at or run.started_at) if run and status == "completed" else None,
        "error": error_of(run) if run else {"code": "server_error", "message": "the response's run is gone"},
        "incomplete_details": None,
        "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"),
        "max_tool_calls": req.get("max_tool_calls"),
        "model": record.model,
        "output": output_items(record, steps, messages, waiting_calls(run)) if run else [],
        "parallel_tool_calls": req.get("parallel_tool_calls", True),
        "previous_response_id": record.previous_response_id,
        "conversation": {"id": record.conversation} if record.conversation else None,
        "reasoning": req.get("reasoning") or {"effort": None, "summary": None},
        "service_tier": req.get("service_tier") or "default",
        "store": record.store,
        "temperature": req.get("temperature", 1.0),
        "text": req.get("text") or {"format": {"type": "text"}},
        "tool_choice": req.get("tool_choice", "auto"),
        "tools": req.get("tools") or [],
        "top_logprobs": req.get("top_logprobs", 0),
        "top_p": req.get("top_p", 1.0),
        "truncation": req.get("truncation") or "disabled",
        "usage": usage_of(run, record.usage_before) if run else None,
        "safety_identifier": req.get("safety_identifier"),
        "prompt_cache_key": req.get("prompt_cache_key"),
        "metadata": req.get("metadata") or {},
    }
    if obj["usage"] is None:
        del obj["usage"]  # not nullable in OpenAI's schema: absent until there is some
    if req.get("user") is not None:
        obj["user"] = req["user"]
    if run is not None and run.status == "incomplete":
        reason = (run.incomplete_details.reason if run.incomplete_details else "") or ""
        obj["incomplete_details"] = {
            "reason": "content_filter" if "content" in reason else "max_output_tokens",
        }
    return obj
