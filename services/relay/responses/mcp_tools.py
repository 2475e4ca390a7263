"""`tools: [{type: "mcp", server_label, server_url, allowed_tools, require_approval}]` in a Responses
request: the server's tools, listed now through the dispatcher (which applies the operator's egress
policy to the URL, as for a manifest's), become server-side tools of this run.

The listing is the response's first output item (`mcp_list_tools`, with the error when the server
could not be listed: its tools are then not offered). Approval follows `require_approval`, whose
default, as at OpenAI, is to ask: a call waits as an `mcp_approval_request` until the next request
answers it with an `mcp_approval_response`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from ossabus.contracts import subjects
from ossabus.contracts.agent import McpBinding, ToolDefinition
from ossabus.contracts.ids import new_id
from ossabus.contracts.tools import McpToolList, McpToolsRequest
from ossabus.relay.context import bus
from ossabus.relay.errors import ApiError
from ossabus.runtime.bus import BusFailure


@dataclass
class RequestMcp:
    tools: list[ToolDefinition] = field(default_factory=list)  # for the run
    labels: dict[str, str] = field(default_factory=dict)  # function name -> server_label
    list_items: list[dict[str, Any]] = field(default_factory=list)  # mcp_list_tools output items


def _names(value: Any) -> set[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return {str(v) for v in value}
    if isinstance(value, dict):
        return {str(v) for v in value.get("tool_names") or []}
    return None


def needs_approval(policy: Any, name: str) -> bool:
    if policy in (None, "always"):
        return True
    if policy == "never":
        return False
    if isinstance(policy, dict):
        if name in (_names(policy.get("never")) or set()):
            return False
        if name in (_names(policy.get("always")) or set()):
            return True
        return policy.get("always") is not None or policy.get("never") is None
    return True


async def request_mcp_tools(request: Request, tools: list[dict[str, Any]]) -> RequestMcp:
    found = RequestMcp()
    for i, tool in enumerate(tools):
        if tool.get("type") != "mcp":
            continue
        label, url = tool.get("server_label"), tool.get("server_url")
        if not isinstance(label, str) or not label:
            raise ApiError(400, "an mcp tool needs `server_label`", param=f"tools[{i}].server_label")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ApiError(
                400,
                "an mcp tool needs `server_url` (connectors are not available here)",
                param=f"tools[{i}].server_url",
            )
        binding = McpBinding(url=url)
        item: dict[str, Any] = {"id": new_id("mcpl"), "type": "mcp_list_tools", "server_label": label, "tools": []}
        try:
            listed = (
                await bus(request).call(subjects.DISPATCHER_MCP_TOOLS, McpToolsRequest(server=binding), McpToolList)
            ).data
        except BusFailure as failure:
            item["error"] = failure.error.message
            found.list_items.append(item)
            continue
        allowed = _names(tool.get("allowed_tools"))
        for listed_tool in listed:
            if allowed is not None and listed_tool.name not in allowed:
                continue
            confirmation = needs_approval(tool.get("require_approval"), listed_tool.name)
            found.tools.append(listed_tool.model_copy(update={"confirmation": confirmation, "mcp": binding}))
            found.labels[listed_tool.function_name or listed_tool.name] = label
            item["tools"].append(
                {
                    "name": listed_tool.name,
                    "description": listed_tool.description,
                    "input_schema": listed_tool.parameters,
                    "annotations": None,
                }
            )
        item["error"] = None
        found.list_items.append(item)
    return found


def as_function(tool: ToolDefinition) -> dict[str, Any]:
    """How the run offers the tool to the model (the run's `tools`, OpenAI's function form)."""
    function = {"name": tool.function_name or tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}
