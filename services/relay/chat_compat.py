"""Chat Completions shapes that only differ in form from tools: the legacy `functions` /
`function_call` and `custom` tools (free-form text input). Both are offered to the model as
function tools, and what comes back is put back into the shape the client asked in."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ossabus.relay.errors import ApiError
from ossabus.relay.openai_requests import ChatCompletionCreate, CustomToolIn

CUSTOM_INPUT = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}


@dataclass
class Shapes:
    legacy: bool = False  # the client used `functions`: answers carry `function_call`
    custom: set[str] = field(default_factory=set)  # names of custom tools


def tools_and_choice(body: ChatCompletionCreate) -> tuple[list[dict[str, Any]] | None, Any, Shapes]:
    """The request's tools as function tools, its tool choice in those terms, and how to answer."""
    shapes = Shapes()
    if body.functions and body.tools:
        raise ApiError(400, "Give `tools` or the legacy `functions`, not both.", param="functions")
    if body.functions:
        shapes.legacy = True
        tools = [{"type": "function", "function": f.model_dump(exclude_none=True)} for f in body.functions]
        choice = body.function_call
        if isinstance(choice, dict):
            choice = {"type": "function", "function": {"name": choice.get("name", "")}}
        return tools, choice if choice is not None else body.tool_choice, shapes
    if not body.tools:
        return None, body.tool_choice, shapes
    tools = []
    for tool in body.tools:
        if isinstance(tool, CustomToolIn):
            shapes.custom.add(tool.custom.name)
            function = {
                "name": tool.custom.name,
                "description": tool.custom.description or "",
                "parameters": CUSTOM_INPUT,
            }
            tools.append({"type": "function", "function": function})
        else:
            tools.append(tool.model_dump(exclude_none=True))
    choice = body.tool_choice
    if isinstance(choice, dict) and choice.get("type") == "custom":
        choice = {"type": "function", "function": {"name": (choice.get("custom") or {}).get("name", "")}}
    return tools, choice, shapes


def _custom_input(arguments: str) -> str:
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return arguments
    return str(value.get("input", "")) if isinstance(value, dict) else arguments


def restore_message(message: dict[str, Any], finish: str | None, shapes: Shapes) -> tuple[dict[str, Any], str | None]:
    calls = message.get("tool_calls") or []
    if not calls:
        return message, finish
    if shapes.legacy:
        first = calls[0]["function"]
        message = {k: v for k, v in message.items() if k != "tool_calls"}
        message["function_call"] = {"name": first["name"], "arguments": first["arguments"]}
        return message, "function_call" if finish == "tool_calls" else finish
    if shapes.custom:
        message = {
            **message,
            "tool_calls": [
                {
                    "id": c["id"],
                    "type": "custom",
                    "custom": {"name": c["function"]["name"], "input": _custom_input(c["function"]["arguments"])},
                }
                if c["function"]["name"] in shapes.custom
                else c
                for c in calls
            ],
        }
    return message, finish


def restore_completion(result: dict[str, Any], shapes: Shapes) -> dict[str, Any]:
    if not shapes.legacy and not shapes.custom:
        return result
    for choice in result.get("choices") or []:
        choice["message"], choice["finish_reason"] = restore_message(
            choice["message"], choice.get("finish_reason"), shapes
        )
    return result


def restore_chunk(chunk: dict[str, Any], shapes: Shapes) -> dict[str, Any]:
    """The executor sends a client's tool calls whole, in one chunk: rewrite that chunk."""
    if not shapes.legacy and not shapes.custom:
        return chunk
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        calls = delta.get("tool_calls")
        if not calls:
            continue
        whole = [{"id": c.get("id"), "type": "function", "function": c.get("function") or {}} for c in calls]
        message, finish = restore_message({**delta, "tool_calls": whole}, choice.get("finish_reason"), shapes)
        if "tool_calls" in message:
            message["tool_calls"] = [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]
        choice["delta"], choice["finish_reason"] = message, finish
    return chunk
