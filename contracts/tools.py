"""Tool calls on the bus: what a tool worker receives and answers, and what the dispatcher does.

A tool worker is any process, in any language, that subscribes to `ossa.tools.<name>` in the queue
group `ossa-tool-<name>` and answers each `ToolCallRequest` with a `ToolCallReply`. It announces
the tools it serves on `ossa.announce.tools.<name>` so agents can use them.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from ossabus.contracts.agent import McpBinding, ToolDefinition


class ToolCallRequest(BaseModel):
    """Sent to `ossa.tools.<name>`: the arguments are already checked against the tool's schema."""

    call_id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = None
    thread_id: str | None = None
    agent: str | None = None


class ToolError(BaseModel):
    code: str = Field(description="invalid_arguments, no_worker, timeout, tool_failed, output_too_large, ...")
    message: str


class ToolCallReply(BaseModel):
    """A worker's answer: an output (text, or anything JSON, which is serialised for the model) or an error."""

    output: Any = None
    error: ToolError | None = None


class ToolAnnouncement(BaseModel):
    """Published on `ossa.announce.tools.<name>` when a worker starts, and every `every_s` seconds."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    worker: str
    every_s: float = 30.0


class DispatchRequest(BaseModel):
    """The executor asks the dispatcher (`ossa.dispatcher.call`) to run one tool call."""

    tool: ToolDefinition
    call_id: str
    arguments: str = Field(description="The arguments as the model wrote them (JSON text).")
    run_id: str | None = None
    thread_id: str | None = None
    agent: str | None = None


class DispatchResult(BaseModel):
    """What the model sees as the tool's output, and whether the call failed."""

    output: str
    error: ToolError | None = None
    duration_ms: float = 0.0
    truncated: bool = False


class ToolList(BaseModel):
    """Reply of `ossa.dispatcher.tools`: the tools some worker serves now."""

    data: list[ToolAnnouncement]


class McpToolsRequest(BaseModel):
    """The executor asks the dispatcher (`ossa.dispatcher.mcp.tools`) what an MCP server offers."""

    server: McpBinding


class McpToolList(BaseModel):
    """The tools an MCP server lists, as tool definitions bound to that server."""

    data: list[ToolDefinition]


def tool_error(code: str, message: str) -> str:
    """A tool result that tells the model the call failed, in the shape every tool error has."""
    return json.dumps({"error": {"code": code, "message": message}})
