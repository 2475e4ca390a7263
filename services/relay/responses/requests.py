"""`POST /v1/responses` bodies, validated as OpenAI validates them, and their `input` read into
what the run machinery stores: thread messages (text, images, earlier function calls with their
outputs), instructions from system/developer items, and outputs for the calls a run waits on.

Every field OpenAI's `CreateResponse` documents is accepted; an unknown field is a 400 naming it
(OpenAI: "Unrecognized request argument supplied"), as is a tool type ossabus cannot run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ossabus.relay.errors import ApiError
from ossabus.relay.openai_requests import Metadata, Strict, Temperature, TopP, check_metadata

KNOWN_TOOLS = {"function", "mcp", "file_search", "code_interpreter"}
MEMORY_LIMITS = {"1g", "4g", "16g", "64g"}  # OpenAI's container sizes
FILE_SEARCH_RESULTS = "file_search_call.results"


class TextFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_for_json_schema(self):
        if self.type == "json_schema" and (self.schema_ is None or not self.name):
            raise ValueError("text.format of type json_schema needs `name` and `schema`")
        return self


class TextParam(Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningParam(Strict):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ConversationRef(Strict):
    id: str = Field(min_length=1)


class StreamOptions(Strict):
    include_obfuscation: bool | None = None


class ResponseCreate(Strict):
    model: str | None = Field(None, min_length=1)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = Field(None, max_length=256_000)
    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None
    store: bool | None = None
    background: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    text: TextParam | None = None
    reasoning: ReasoningParam | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(None, ge=16)
    max_tool_calls: int | None = Field(None, ge=1)
    truncation: Literal["auto", "disabled"] | None = None
    metadata: Metadata
    include: list[str] | None = None
    user: str | None = None
    safety_identifier: str | None = Field(None, max_length=64)
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    service_tier: str | None = None
    temperature: Temperature
    top_p: TopP
    top_logprobs: int | None = Field(None, ge=0, le=20)
    prompt: dict[str, Any] | None = None
    context_management: list[dict[str, Any]] | None = None
    moderation: Any = None

    _metadata = field_validator("metadata")(check_metadata)

    @model_validator(mode="after")
    def _one_history(self):
        if self.previous_response_id and self.conversation:
            raise ValueError("give previous_response_id or conversation, not both")
        return self

    @property
    def conversation_id(self) -> str | None:
        return self.conversation.id if isinstance(self.conversation, ConversationRef) else self.conversation


def require_model(model: str | None) -> str:
    if not model:
        raise ApiError(400, "Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    return model


def check_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The request's tools: functions the client runs, MCP servers; anything else is a 400."""
    out = []
    for i, tool in enumerate(tools or []):
        kind = tool.get("type")
        if kind not in KNOWN_TOOLS:
            raise ApiError(
                400,
                f"tools[{i}].type {kind!r} is not supported here (function, mcp, file_search, code_interpreter)",
                param=f"tools[{i}].type",
                code="unsupported_tool",
            )
        if kind == "function":
            name = tool.get("name")
            if not isinstance(name, str) or not name:
                raise ApiError(400, "a function tool needs a `name`", param=f"tools[{i}].name")
            parameters = tool.get("parameters")
            if parameters is not None and not isinstance(parameters, dict):
                raise ApiError(400, "`parameters` is a JSON Schema object", param=f"tools[{i}].parameters")
        if kind == "file_search":
            check_file_search(tool, f"tools[{i}]")
        if kind == "code_interpreter":
            check_code_interpreter(tool, f"tools[{i}]")
        out.append(tool)
    return out


def check_code_interpreter(tool: dict[str, Any], where: str) -> None:
    """OpenAI's CodeInterpreterTool: `container` is `{type: "auto", file_ids?, memory_limit?}` (a
    session per conversation, started on first use); containers by id (the Containers API) are not
    served here."""
    container = tool.get("container", {"type": "auto"})
    if isinstance(container, str):
        raise ApiError(
            400,
            'containers by id are not supported here; give `container: {"type": "auto"}` (each '
            "conversation gets its own)",
            param=f"{where}.container",
            code="unsupported_value",
        )
    if not isinstance(container, dict) or container.get("type") != "auto":
        raise ApiError(400, '`container` is {"type": "auto", "file_ids": [...]}', param=f"{where}.container")
    unknown = set(container) - {"type", "file_ids", "memory_limit", "network_policy"}
    if unknown:
        name = sorted(unknown)[0]
        raise ApiError(400, f"unknown container field {name!r}", param=f"{where}.container.{name}")
    file_ids = container.get("file_ids", [])
    if not isinstance(file_ids, list) or not all(isinstance(i, str) and i for i in file_ids) or len(file_ids) > 50:
        raise ApiError(400, "`file_ids` is a list of at most 50 file ids", param=f"{where}.container.file_ids")
    memory = container.get("memory_limit")
    if memory is not None and memory not in MEMORY_LIMITS:
        raise ApiError(
            400, f"`memory_limit` is one of {sorted(MEMORY_LIMITS)}", param=f"{where}.container.memory_limit"
        )
    policy = container.get("network_policy")
    if policy is not None and (not isinstance(policy, dict) or policy.get("type") != "disabled"):
        raise ApiError(400, "the code interpreter never has network access", param=f"{where}.container.network_policy")


def check_file_search(tool: dict[str, Any], where: str) -> None:
    """OpenAI's FileSearchTool: `vector_store_ids` (required), `max_num_results` 1..50, `filters`,
    `ranking_options`; the stores themselves are checked against the caller's project at search."""
    ids = tool.get("vector_store_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise ApiError(400, "a file_search tool needs `vector_store_ids`", param=f"{where}.vector_store_ids")
    if len(ids) > 2:
        raise ApiError(400, "file_search searches at most 2 vector stores", param=f"{where}.vector_store_ids")
    limit = tool.get("max_num_results")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 50):
        raise ApiError(400, "max_num_results is between 1 and 50", param=f"{where}.max_num_results")
    for name in ("filters", "ranking_options"):
        if tool.get(name) is not None and not isinstance(tool[name], dict):
            raise ApiError(400, f"`{name}` is an object", param=f"{where}.{name}")
    unknown = set(tool) - {"type", "vector_store_ids", "max_num_results", "filters", "ranking_options"}
    if unknown:
        raise ApiError(400, f"unknown file_search field {sorted(unknown)[0]!r}", param=f"{where}.{sorted(unknown)[0]}")


@dataclass
class ReadInput:
    """What an `input` holds, in the run machinery's terms."""

    system: list[str] = field(default_factory=list)  # system/developer items: added to the instructions
    entries: list[tuple[str, str, list[dict[str, Any]] | None]] = field(default_factory=list)  # role, text, chat
    outputs: dict[str, str] = field(default_factory=dict)  # call_id -> output, for a waiting run
    decisions: dict[str, tuple[bool, str | None]] = field(default_factory=dict)  # call_id -> approval
    items: list[dict[str, Any]] = field(default_factory=list)  # the input items as stored (input_items)


def _content_parts(content: Any, where: str) -> tuple[str, list[dict[str, Any]]]:
    """(the text, chat content parts) of a message item's content."""
    if isinstance(content, str):
        return content, [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise ApiError(400, "content is a string or a list of content parts", param=f"{where}.content")
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise ApiError(400, "a text part needs `text`", param=f"{where}.content[{j}].text")
            texts.append(text)
            parts.append({"type": "text", "text": text})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise ApiError(
                    400,
                    "an input_image part needs `image_url` (file_id comes with files)",
                    param=f"{where}.content[{j}]",
                )
            parts.append({"type": "image_url", "image_url": {"url": url, "detail": part.get("detail") or "auto"}})
        elif kind == "refusal":
            texts.append(str(part.get("refusal") or ""))
            parts.append({"type": "text", "text": str(part.get("refusal") or "")})
        else:
            raise ApiError(
                400,
                f"content part type {kind!r} is not supported (input_text, input_image, output_text)",
                param=f"{where}.content[{j}].type",
            )
    return "".join(texts), parts


def read_input(given: str | list[dict[str, Any]] | None, waiting_calls: set[str]) -> ReadInput:
    """`input` as a string or items. Function calls and their outputs that a run does not wait on
    become history (a client that sends the whole conversation each time, as the Agents SDK does)."""
    read = ReadInput()
    if given is None:
        return read
    if isinstance(given, str):
        read.entries.append(("user", given, None))
        read.items.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text": given}]})
        return read
    calls: dict[str, dict[str, Any]] = {}
    pending_exchange: list[dict[str, Any]] = []

    def flush_exchange() -> None:
        if pending_exchange:
            read.entries.append(("assistant", "", list(pending_exchange)))
            pending_exchange.clear()

    for i, item in enumerate(given):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise ApiError(400, "an input item is an object", param=where)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise ApiError(
                    400, f"role {role!r} is not one of user, assistant, system, developer", param=f"{where}.role"
                )
            text, parts = _content_parts(item.get("content"), where)
            if role in ("system", "developer"):
                read.system.append(text)
            else:
                flush_exchange()
                has_images = any(p["type"] == "image_url" for p in parts)
                chat = [{"role": role, "content": parts}] if has_images else None
                read.entries.append((role, text, chat))
            read.items.append({**item, "type": "message"})
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise ApiError(400, "a function_call item needs `call_id` and `name`", param=where)
            arguments = item.get("arguments") if isinstance(item.get("arguments"), str) else "{}"
            calls[call_id] = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            pending_exchange.append({"role": "assistant", "content": None, "tool_calls": [calls[call_id]]})
            read.items.append(item)
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            output = item.get("output")
            if not isinstance(call_id, str):
                raise ApiError(400, "a function_call_output item needs `call_id`", param=f"{where}.call_id")
            if not isinstance(output, str):
                output = json.dumps(output)
            if call_id in waiting_calls and call_id not in calls:
                read.outputs[call_id] = output
            elif call_id in calls:
                pending_exchange.append({"role": "tool", "tool_call_id": call_id, "content": output})
            else:
                raise ApiError(
                    400,
                    f"No tool call found for function call output with call_id {call_id}.",
                    param=f"{where}.call_id",
                )
            read.items.append(item)
        elif kind == "mcp_approval_response":
            request_id = item.get("approval_request_id")
            if not isinstance(request_id, str) or not isinstance(item.get("approve"), bool):
                raise ApiError(400, "an mcp_approval_response needs `approval_request_id` and `approve`", param=where)
            call_id = "call_" + request_id.removeprefix("mcpr_")
            if call_id not in waiting_calls:
                raise ApiError(
                    400, f"No approval request found with id {request_id}.", param=f"{where}.approval_request_id"
                )
            reason = item.get("reason") if isinstance(item.get("reason"), str) else None
            read.decisions[call_id] = (item["approve"], reason)
            read.items.append(item)
        elif kind in ("reasoning", "item_reference", "mcp_list_tools", "mcp_call", "mcp_approval_request"):
            read.items.append(item)  # context the server has already, or that the model need not see again
        else:
            raise ApiError(400, f"input item type {kind!r} is not supported", param=f"{where}.type")
    flush_exchange()
    _merge_tool_turns(read)
    return read


def _merge_tool_turns(read: ReadInput) -> None:
    """Consecutive function calls form one assistant turn with several tool_calls (what chat models
    expect), followed by their outputs."""
    merged = []
    for role, text, chat in read.entries:
        if chat and role == "assistant" and all("tool_calls" in m or m["role"] == "tool" for m in chat):
            calls = [c for m in chat if "tool_calls" in m for c in m["tool_calls"]]
            outputs = [m for m in chat if m["role"] == "tool"]
            answered = {m["tool_call_id"] for m in outputs}
            missing = [c["id"] for c in calls if c["id"] not in answered]
            if missing:
                raise ApiError(400, f"No tool output found for function call {missing[0]}.", param="input")
            chat = [{"role": "assistant", "content": None, "tool_calls": calls}, *outputs]
        merged.append((role, text, chat))
    read.entries = merged
