"""MCP tools through the official `mcp` SDK: one long-lived session per server, shared by every run.

Starting a stdio server (often `npx ...`) costs hundreds of milliseconds, so a session is opened on
first use and kept. The SDK's client is an async context whose task groups must be entered and left
in one task, so each session lives in a task of its own that holds it open until it is closed or
dies. A server that crashes fails the calls in flight with a tool error the model reads; the next
call starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from ossabus.contracts.agent import McpBinding, ToolDefinition
from ossabus.dispatcher.http_tools import Refused, check_destination
from ossabus.dispatcher.mcp_config import McpServerConfig, describe, expand_operator_env, from_manifest
from ossabus.registry.tools import function_name_for
from ossabus.runtime.egress import EgressRefused, check_declared_access, pinned_transport

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 30.0
LIST_TIMEOUT_S = 15.0


class McpFailure(Exception):
    """A call that did not produce a tool result; `code` is what the model sees as the error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class McpSession:
    """The session with one server, opened on demand and reopened after it dies."""

    def __init__(self, name: str, config: McpServerConfig):
        self.name, self.config = name, config
        self._client: Client | None = None
        self._holder: asyncio.Task | None = None
        self._close = asyncio.Event()
        self._lock = asyncio.Lock()
        self.tools: list[ToolDefinition] | None = None

    async def client(self) -> Client:
        async with self._lock:
            if self._client is not None and self._holder is not None and not self._holder.done():
                return self._client
            self.tools = None
            self._close = asyncio.Event()
            ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
            self._holder = asyncio.create_task(self._hold(ready), name=f"mcp:{self.name}")
            try:
                self._client = await asyncio.wait_for(asyncio.shield(ready), CONNECT_TIMEOUT_S)
            except TimeoutError as exc:
                await self.close()
                raise McpFailure("mcp_unavailable", f"the MCP server {self.name} did not start in time") from exc
            except McpFailure:
                raise
            except Exception as exc:
                raise McpFailure(
                    "mcp_unavailable", f"cannot start the MCP server {self.name}: {type(exc).__name__}: {exc}"[:500]
                ) from exc
            return self._client

    async def _hold(self, ready: asyncio.Future[Client]) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = Client(await self._target(stack), mode="auto")
                await stack.enter_async_context(client)
                ready.set_result(client)
                await self._close.wait()
        except BaseException as exc:  # the SDK raises exception groups from its task groups
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            elif not self._close.is_set():
                log.warning("MCP server %s: session ended: %s", self.name, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._client = None

    async def _target(self, stack: contextlib.AsyncExitStack) -> Any:
        config = self.config
        if config.command:
            env = {key: expand_operator_env(value) for key, value in config.env.items()}
            return StdioServerParameters(command=config.command, args=config.args, env=env or None, cwd=config.cwd)
        # The operator's own servers are trusted as configured; a URL a manifest chose goes through
        # the egress policy, checked and pinned on every request.
        trusted = config.allow_private_network
        url = expand_operator_env(config.url or "") if trusted else (config.url or "")
        if not trusted:
            try:
                await check_destination(url, "the MCP server's URL")
            except Refused as refused:
                raise McpFailure(refused.code, refused.message) from refused
        headers = {key: expand_operator_env(value) for key, value in config.headers.items()}
        if any("${" in value for value in headers.values()):
            raise McpFailure("missing_credentials", f"a header of the MCP server {self.name} reads an unset variable")
        http = await stack.enter_async_context(
            httpx2.AsyncClient(
                headers=headers,
                timeout=httpx2.Timeout(30.0, read=300.0),
                follow_redirects=False,
                transport=None if trusted else pinned_transport(httpx2),
            )
        )
        return streamable_http_client(url, http_client=http)

    async def list_tools(self) -> list[ToolDefinition]:
        if self.tools is not None:
            return self.tools
        client = await self.client()
        tools: list[ToolDefinition] = []
        cursor: str | None = None
        try:
            async with asyncio.timeout(LIST_TIMEOUT_S):
                for _ in range(100):  # a server whose pages never end cannot hang us
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(self._definition(tool) for tool in page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
        except (MCPError, TimeoutError) as exc:
            await self.close()
            raise McpFailure("mcp_unavailable", f"the MCP server {self.name} did not list its tools: {exc}") from exc
        self.tools = tools
        return tools

    def _definition(self, tool: Any) -> ToolDefinition:
        return ToolDefinition(
            name=tool.name,
            function_name=function_name_for(tool.name),
            kind="mcp",
            description=tool.description,
            parameters=tool.input_schema or {"type": "object", "properties": {}},
            mcp=McpBinding(server=self.name),
            sources=[f"mcp:{self.name}"],
        )

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float) -> tuple[str, bool]:
        """(text of the result, whether the server flagged it as an error)."""
        client = await self.client()
        try:
            result = await asyncio.wait_for(client.call_tool(tool, arguments), timeout)
        except TimeoutError as exc:
            raise McpFailure("timeout", f"the MCP tool {tool!r} did not answer within {timeout:g}s") from exc
        except MCPError as exc:
            if "closed" in str(exc).lower():
                await self.close()
                raise McpFailure(
                    "mcp_server_failed",
                    f"the MCP server {self.name} stopped while running {tool!r} ({exc}); the next call restarts it",
                ) from exc
            raise McpFailure("tool_failed", f"the MCP server {self.name} refused the call: {exc}") from exc
        return result_text(result), bool(result.is_error)

    async def close(self) -> None:
        self._close.set()
        holder, self._holder = self._holder, None
        if holder is not None and holder is not asyncio.current_task():
            try:
                await asyncio.wait_for(asyncio.shield(holder), 5)
            except (TimeoutError, Exception):
                holder.cancel()
        self._client, self.tools = None, None


def result_text(result: Any) -> str:
    """What the model reads: the text parts, else the structured content, else a note per other part."""
    texts, others = [], []
    for part in result.content or []:
        if getattr(part, "type", None) == "text":
            texts.append(part.text)
        else:
            others.append({"type": getattr(part, "type", "unknown"), "mime_type": getattr(part, "mime_type", None)})
    if texts:
        return "\n".join(texts)
    if result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return json.dumps({"content": others}) if others else ""


class McpServers:
    """Every MCP session of this dispatcher, by server: configured names first, manifest URLs second."""

    def __init__(self, configured: dict[str, McpServerConfig]):
        self.configured = configured
        self.sessions: dict[str, McpSession] = {}

    def session(self, binding: McpBinding | None) -> McpSession:
        if binding is None:
            raise McpFailure("mcp_unconfigured", "the tool names no MCP server")
        config = self.configured.get(binding.server or "")
        if config is None:
            config = from_manifest(binding)
        if config is None:
            hint = (
                "; commands come only from the operator's MCP configuration (OSSABUS_MCP_CONFIG)"
                if binding.command
                else ""
            )
            raise McpFailure(
                "mcp_unconfigured",
                f"the MCP server {describe(binding)} is not configured on this dispatcher{hint}",
            )
        if config.url:
            # The agent's own network_access narrows every server it reaches by URL, the
            # operator's too; checked per agent here because sessions are shared between agents.
            try:
                check_declared_access(binding.network, expand_operator_env(config.url), "the MCP server's URL")
            except EgressRefused as refused:
                raise McpFailure(refused.code, refused.message) from refused
        name = binding.server or binding.url or "mcp"
        session = self.sessions.get(config.key)
        if session is None:
            session = self.sessions[config.key] = McpSession(name, config)
        return session

    async def list_tools(self, binding: McpBinding) -> list[ToolDefinition]:
        tools = await self.session(binding).list_tools()
        inherited = {
            "mcp": binding,
            "timeout_seconds": binding.timeout_seconds,
            "idempotent": binding.idempotent,
            "confirmation": binding.confirmation,
        }
        return [tool.model_copy(update=inherited) for tool in tools]

    async def call(self, tool: ToolDefinition, arguments: dict[str, Any], timeout: float) -> tuple[str, bool]:
        return await self.session(tool.mcp).call(tool.name, arguments, timeout)

    async def close(self) -> None:
        await asyncio.gather(*(session.close() for session in self.sessions.values()), return_exceptions=True)
        self.sessions.clear()
