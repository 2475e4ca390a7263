"""The tool dispatcher service: executes the tool calls of runs.

Tool workers (any process serving `ossa.tools.<name>`) announce themselves; the dispatcher checks
each call's arguments against the tool's schema, calls a worker with a timeout, and answers with
a result the model can read, errors included. HTTP tools are called directly, MCP tools through one
kept session per MCP server.

Consumes `ossa.dispatcher.call` (DispatchRequest -> DispatchResult), `ossa.dispatcher.tools` (the live
tools), `ossa.dispatcher.mcp.tools` (what an MCP server lists) and `ossa.announce.tools.>`; publishes
requests on `ossa.tools.<name>` and a roll call at start.
"""

from __future__ import annotations

import contextlib

from faststream.nats.annotations import NatsMessage
from opentelemetry import trace
from pydantic import ValidationError

from ossabus.contracts import subjects
from ossabus.contracts.bus import AnyRequest
from ossabus.contracts.telemetry import ToolReport
from ossabus.contracts.tools import (
    DispatchRequest,
    DispatchResult,
    McpToolList,
    McpToolsRequest,
    ToolAnnouncement,
    ToolList,
)
from ossabus.dispatcher.dispatch import dispatch
from ossabus.dispatcher.mcp_config import load_config
from ossabus.dispatcher.mcp_tools import McpFailure, McpServers
from ossabus.runtime import genai
from ossabus.runtime.bus import BusFailure, endpoint
from ossabus.runtime.service import Service
from ossabus.runtime.tool_directory import ToolDirectory

NAME = "dispatcher"


class DispatcherService(Service):
    name = NAME

    def __init__(self, settings):
        super().__init__(settings)
        self.directory = ToolDirectory()
        self.mcp = McpServers(load_config(settings.mcp_config))

    def register(self) -> None:
        sub = self.broker.subscriber
        sub(subjects.DISPATCHER_CALL, queue=subjects.DISPATCHER_QUEUE, max_workers=256)(
            endpoint(DispatchRequest, NAME)(self.call_tool)
        )
        sub(subjects.DISPATCHER_TOOLS, queue=subjects.DISPATCHER_QUEUE)(endpoint(AnyRequest, NAME)(self.list_tools))
        sub(subjects.DISPATCHER_MCP_TOOLS, queue=subjects.DISPATCHER_QUEUE, max_workers=16)(
            endpoint(McpToolsRequest, NAME)(self.list_mcp_tools)
        )
        sub(subjects.TOOL_ANNOUNCEMENTS_ALL)(self.on_announcement)

    async def started(self) -> None:
        await self.broker.connection.publish(subjects.TOOL_ROLL_CALL, b"")

    async def stopping(self) -> None:
        await self.mcp.close()

    async def call_tool(self, request: DispatchRequest) -> DispatchResult:
        tool = request.tool
        span = genai.tool_span(tool.name, request.call_id, tool.kind, request.thread_id, request.agent)
        with trace.use_span(span, end_on_exit=True):
            result = await dispatch(self.broker.connection, request, mcp=self.mcp)
            if result.error is not None:
                genai.fail(span, None, result.error.code)
        report = ToolReport(
            tool=tool.name,
            agent=request.agent,
            kind=tool.kind,
            ok=result.error is None,
            code=result.error.code if result.error else None,
            duration_ms=result.duration_ms,
        )
        await self.broker.connection.publish(subjects.TELEMETRY_TOOLS, report.model_dump_json().encode())
        return result

    async def list_mcp_tools(self, request: McpToolsRequest) -> McpToolList:
        try:
            return McpToolList(data=await self.mcp.list_tools(request.server))
        except McpFailure as failure:
            code = "not_found" if failure.code == "mcp_unconfigured" else "unavailable"
            raise BusFailure.of(code, failure.message) from failure

    async def list_tools(self, _: AnyRequest) -> ToolList:
        return ToolList(data=self.directory.live())

    async def on_announcement(self, msg: NatsMessage) -> None:
        with contextlib.suppress(ValidationError):
            self.directory.saw(ToolAnnouncement.model_validate_json(msg.body))
