"""A thread seen as a conversation: its messages and its runs' tool calls as Responses items.

A conversation *is* a thread (same bucket, same project rule), so a thread started through the
Assistants API can be read and continued through Conversations and Responses. Items are ordered by
creation (ids sort by time), and every item's id derives from what it stands for, so each view of
the conversation names the same items.
"""

from __future__ import annotations

from typing import Any

from ossabus.contracts.openai_objects import Message, RunStep, ToolCallsDetails
from ossabus.relay.responses.objects import (
    SERVER_LABEL,
    code_interpreter_item,
    file_search_item,
    item_id,
    mcp_call_item,
    output_annotations,
)
from ossabus.store.state import State


def time_part(object_id: str) -> str:
    """The creation-time part of an ossabus id (`prefix_` + 9 sortable characters)."""
    return object_id.split("_", 1)[-1][:9]


def message_items(message: Message) -> list[dict[str, Any]]:
    if message.chat:
        return chat_items(message)
    kind = "input_text" if message.role == "user" else "output_text"
    part: dict[str, Any] = {"type": kind, "text": message.text}
    if kind == "output_text":
        cited = [a for p in message.content if p.type == "text" for a in p.text.annotations]
        annotations = output_annotations(cited, message.thread_id)
        part |= {"annotations": annotations, "logprobs": []}
    status = "completed" if message.status == "completed" else message.status
    return [{"id": message.id, "type": "message", "role": message.role, "status": status, "content": [part]}]


def chat_items(message: Message) -> list[dict[str, Any]]:
    """A stored entry that stands for chat messages: a client's earlier function calls with their
    outputs, or a message with images."""
    out: list[dict[str, Any]] = []
    for entry in message.chat or []:
        if entry.get("tool_calls"):
            for call in entry["tool_calls"]:
                out.append(
                    {
                        "id": item_id("fc", call["id"]),
                        "type": "function_call",
                        "call_id": call["id"],
                        "name": call["function"]["name"],
                        "arguments": call["function"]["arguments"],
                        "status": "completed",
                    }
                )
        elif entry.get("role") == "tool":
            out.append(
                {
                    "id": item_id("fco", entry["tool_call_id"]),
                    "type": "function_call_output",
                    "call_id": entry["tool_call_id"],
                    "output": entry.get("content") or "",
                    "status": "completed",
                }
            )
        else:
            parts = []
            for part in entry.get("content") or []:
                if part.get("type") == "image_url":
                    image = part["image_url"]
                    parts.append(
                        {"type": "input_image", "image_url": image["url"], "detail": image.get("detail", "auto")}
                    )
                else:
                    parts.append({"type": "input_text", "text": part.get("text", "")})
            out.append(
                {"id": message.id, "type": "message", "role": entry["role"], "status": "completed", "content": parts}
            )
    return out


def step_items(step: RunStep) -> list[dict[str, Any]]:
    """A run's tool calls: calls the client answered (or has yet to) as function_call (+ output);
    calls that ran on the server as mcp_call."""
    if not isinstance(step.step_details, ToolCallsDetails):
        return []
    out: list[dict[str, Any]] = []
    for call in step.step_details.tool_calls:
        if call.type == "file_search":
            out.append(file_search_item(call, with_results=False))
            continue
        if call.type == "code_interpreter":
            out.append(code_interpreter_item(call, step.thread_id, with_outputs=True))
            continue
        if not call.client and call.function.output is not None:
            out.append(mcp_call_item(call, SERVER_LABEL))
            continue
        out.append(
            {
                "id": item_id("fc", call.id),
                "type": "function_call",
                "call_id": call.id,
                "name": call.function.name,
                "arguments": call.function.arguments,
                "status": "completed",
            }
        )
        if call.function.output is not None:
            out.append(
                {
                    "id": item_id("fco", call.id),
                    "type": "function_call_output",
                    "call_id": call.id,
                    "output": call.function.output,
                    "status": "completed",
                }
            )
    return out


async def conversation_items(state: State, thread_id: str) -> list[dict[str, Any]]:
    """Every item of the conversation, oldest first."""
    keyed: list[tuple[str, int, dict[str, Any]]] = []
    for message in await state.list_messages(thread_id):
        if message.status == "in_progress" or not (message.text or message.chat):
            continue
        for n, item in enumerate(message_items(message)):
            keyed.append((time_part(message.id), n, item))
    for run in await state.list_runs(thread_id):
        for step in await state.list_steps(thread_id, run.id):
            for n, item in enumerate(step_items(step)):
                keyed.append((time_part(step.id), n, item))
    keyed.sort(key=lambda entry: (entry[0], entry[1]))
    return [item for _, _, item in keyed]
