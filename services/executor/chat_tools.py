"""An agent's server-side tools inside a Chat Completion: the calls the model makes to them run here
(through the dispatcher, as in runs), and only calls to tools the client sent in `tools` go back to
the client as `tool_calls`. A client never sees a call it cannot answer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from ossabus.contracts import subjects
from ossabus.contracts.agent import AgentDefinition, ToolDefinition
from ossabus.contracts.tools import DispatchRequest, DispatchResult
from ossabus.executor.offered_tools import McpListings
from ossabus.runtime.bus import BusClient, BusFailure
from ossabus.runtime.tool_directory import ToolDirectory

DEFAULT_TOOL_TIMEOUT_S = 60.0
MAX_SERVER_ROUNDS = 10  # model turns answered by server-side tools within one completion


@dataclass
class ServerTools:
    """The agent's tools that run on the server, by the name the model calls them."""

    by_name: dict[str, ToolDefinition] = field(default_factory=dict)
    definition: AgentDefinition | None = None

    def runs(self, name: str) -> bool:
        return name in self.by_name


def model_form(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.function_name or tool.name,
            "description": tool.description or "",
            "parameters": tool.parameters,
        },
    }


async def server_tools(
    definition: AgentDefinition, client_names: set[str], directory: ToolDirectory, listings: McpListings
) -> ServerTools:
    """HTTP and MCP tools of the manifest (MCP schemas from the server's listing) and function tools a
    worker serves; a tool the client sent under the same name is the client's."""
    found = ServerTools(definition=definition)
    for tool in definition.tools:
        name = tool.function_name or tool.name
        if name in client_names or tool.kind in ("code_interpreter", "file_search"):
            continue
        if tool.kind == "mcp" and not tool.parameters_declared and tool.mcp is not None:
            listed = next((t for t in await listings.tools(tool.mcp) or [] if t.name == tool.name), None)
            if listed is None:
                continue
            tool = tool.model_copy(update={"parameters": listed.parameters, "parameters_declared": True})
        if tool.http is not None or tool.kind == "mcp" or directory.serves(name):
            found.by_name[name] = tool
    for server in definition.mcp_servers:
        for listed in await listings.tools(server) or []:
            name = listed.function_name or listed.name
            if name not in client_names:
                found.by_name.setdefault(name, listed)
    return found


def tool_error(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}})


async def run_calls(bus: BusClient, tools: ServerTools, calls: list[dict[str, Any]], chat_id: str) -> list[dict]:
    """The tool messages answering `calls`, all run at once."""

    async def one(call: dict[str, Any]) -> dict[str, Any]:
        tool = tools.by_name[call["function"]["name"]]
        if tools.definition is not None and tools.definition.needs_approval(tool):
            output = tool_error(
                "approval_required",
                "this tool needs a person's approval, which a chat completion cannot ask for "
                "(use the Responses or Assistants API)",
            )
        else:
            request = DispatchRequest(
                tool=tool,
                call_id=call["id"],
                arguments=call["function"]["arguments"] or "{}",
                run_id=chat_id,
                agent=tools.definition.name if tools.definition else None,
            )
            try:
                result = await bus.call(
                    subjects.DISPATCHER_CALL,
                    request,
                    DispatchResult,
                    wait_s=(tool.timeout_seconds or DEFAULT_TOOL_TIMEOUT_S) + 5,
                )
                output = result.output
            except BusFailure as failure:
                output = tool_error("dispatcher_unavailable", failure.error.message)
        return {"role": "tool", "tool_call_id": call["id"], "content": output}

    return list(await asyncio.gather(*(one(call) for call in calls)))
