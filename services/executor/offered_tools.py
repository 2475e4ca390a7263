"""The tools one model turn offers, and where each one runs.

The run's own function tools come first. MCP tools are completed from what their server lists:
a manifest may name an MCP tool without a schema (`capabilities: [read_file]`), or name a server
without tools, meaning all of them. Listings come from the dispatcher (which holds the MCP sessions)
and are kept for a minute, so a busy agent does not ask for every turn.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ossabus.contracts import subjects
from ossabus.contracts.agent import AgentDefinition, McpBinding, ToolDefinition
from ossabus.contracts.openai_objects import Run
from ossabus.contracts.tools import McpToolList, McpToolsRequest
from ossabus.executor import code_interpreter, file_search, prompt
from ossabus.runtime.bus import BusClient, BusFailure

log = logging.getLogger(__name__)
LISTING_TTL_S = 60.0


@dataclass
class OfferedTools:
    """Function name -> (the tool as the model sees it, its definition when the agent declares one)."""

    by_name: dict[str, tuple[dict[str, Any], ToolDefinition | None]] = field(default_factory=dict)

    def for_model(self) -> list[dict[str, Any]]:
        return [schema for schema, _ in self.by_name.values()]

    def definition(self, name: str) -> ToolDefinition | None:
        entry = self.by_name.get(name)
        return entry[1] if entry else None

    def __contains__(self, name: str) -> bool:
        return name in self.by_name


def model_form(tool: ToolDefinition) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.function_name or tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


class McpListings:
    """What each MCP server lists, cached per server."""

    def __init__(self, bus: BusClient):
        self.bus = bus
        self.cache: dict[str, tuple[float, list[ToolDefinition]]] = {}

    async def tools(self, server: McpBinding) -> list[ToolDefinition] | None:
        key = server.model_dump_json()
        cached = self.cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < LISTING_TTL_S:
            return cached[1]
        try:
            listing = await self.bus.call(
                subjects.DISPATCHER_MCP_TOOLS, McpToolsRequest(server=server), McpToolList, wait_s=45
            )
        except BusFailure as failure:
            log.warning("MCP server %s: its tools are not offered: %s", server.server or server.url, failure)
            return None
        self.cache[key] = (time.monotonic(), listing.data)
        return listing.data


async def offered_tools(run: Run, definition: AgentDefinition, listings: McpListings) -> OfferedTools:
    offered = OfferedTools()
    if file_search.offered(run):
        offered.by_name[file_search.NAME] = (model_form(file_search.TOOL), file_search.TOOL)
    if code_interpreter.offered(run):
        offered.by_name[code_interpreter.NAME] = (model_form(code_interpreter.TOOL), code_interpreter.TOOL)
    for schema in prompt.tools_for_model(run):
        name = schema["function"]["name"]
        if name not in offered:  # a function may not take the name of a built-in the run has
            offered.by_name[name] = (schema, definition.tool(name))
    for tool in definition.tools:
        if tool.kind != "mcp" or tool.parameters_declared or tool.function_name not in offered or tool.mcp is None:
            continue
        listed = next((t for t in await listings.tools(tool.mcp) or [] if t.name == tool.name), None)
        if listed is not None:
            completed = tool.model_copy(
                update={
                    "parameters": listed.parameters,
                    "parameters_declared": True,
                    "description": tool.description or listed.description,
                }
            )
            offered.by_name[tool.function_name] = (model_form(completed), completed)
    for server in definition.mcp_servers:
        for listed in await listings.tools(server) or []:
            if listed.function_name not in offered:
                offered.by_name[listed.function_name] = (model_form(listed), listed)
    return offered
