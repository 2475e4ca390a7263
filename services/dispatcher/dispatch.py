"""Running one tool call: check the arguments, call whoever serves the tool, bound time and size.

Every failure (bad arguments, nobody serving the tool, a timeout, the tool's own error, an oversize
answer) becomes a result the model reads, `{"error": {"code", "message"}}`, never an exception that
would end the run: the model can apologise, retry differently, or tell the user.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError

from ossabus.contracts import subjects
from ossabus.contracts.tools import DispatchRequest, DispatchResult, ToolCallReply, ToolCallRequest, ToolError
from ossabus.dispatcher.http_tools import Refused, call_http
from ossabus.dispatcher.mcp_tools import McpFailure, McpServers
from ossabus.runtime.tracing import headers_with_context

DEFAULT_TIMEOUT_S = 30.0
MAX_OUTPUT_BYTES = 64 * 1024


class ToolFailure(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.error = ToolError(code=code, message=message)


def parse_arguments(request: DispatchRequest) -> dict[str, Any]:
    try:
        arguments = json.loads(request.arguments or "{}")
    except json.JSONDecodeError as exc:
        raise ToolFailure("invalid_arguments", f"the arguments are not valid JSON ({exc.msg} at {exc.pos})") from exc
    if not isinstance(arguments, dict):
        raise ToolFailure("invalid_arguments", "the arguments must be a JSON object")
    tool = request.tool
    if tool.parameters_declared and tool.parameters:
        validator = validator_for(tool.parameters, default=Draft202012Validator)(tool.parameters)
        problems = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
        if problems:
            first = problems[0]
            raise ToolFailure("invalid_arguments", f"{first.json_path}: {first.message}")
    return arguments


def as_text(output: Any) -> str:
    return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False, default=str)


def bounded(text: str, limit: int) -> tuple[str, bool]:
    data = text.encode()
    if len(data) <= limit:
        return text, False
    kept = data[:limit].decode(errors="ignore")
    return f"{kept}\n[output truncated: {len(data) - limit} of {len(data)} bytes omitted]", True


async def call_worker(nc: Client, request: DispatchRequest, arguments: dict[str, Any], timeout: float) -> Any:
    name = request.tool.function_name or request.tool.name
    body = ToolCallRequest(
        call_id=request.call_id,
        name=name,
        arguments=arguments,
        run_id=request.run_id,
        thread_id=request.thread_id,
        agent=request.agent,
    )
    try:
        reply = await nc.request(
            subjects.tool(name), body.model_dump_json().encode(), timeout=timeout, headers=headers_with_context()
        )
    except NoRespondersError as exc:
        raise ToolFailure("no_worker", f"no worker serves the tool {name!r} right now") from exc
    except NatsTimeout as exc:
        raise ToolFailure("timeout", f"the tool {name!r} did not answer within {timeout:g}s") from exc
    try:
        answer = ToolCallReply.model_validate_json(reply.data)
    except ValidationError as exc:
        raise ToolFailure("tool_failed", f"the tool {name!r} answered something that is not a tool reply") from exc
    if answer.error is not None:
        raise ToolFailure(answer.error.code, answer.error.message)
    return answer.output


async def call_mcp(servers: McpServers | None, request: DispatchRequest, arguments: dict[str, Any], timeout: float):
    if servers is None:
        raise ToolFailure("mcp_unconfigured", "this dispatcher serves no MCP servers")
    try:
        text, is_error = await servers.call(request.tool, arguments, timeout)
    except McpFailure as failure:
        raise ToolFailure(failure.code, failure.message) from failure
    if is_error:
        raise ToolFailure("tool_failed", text[:2000] or f"the MCP tool {request.tool.name!r} failed")
    return text


RETRIES = 2  # for tools marked idempotent: up to 3 attempts in all
RETRY_DELAY_S = 0.2


async def with_retries(request: DispatchRequest, attempt):
    """Retry a failed call only when the manifest marks the tool idempotent (running it twice is safe)."""
    for tries in range(RETRIES + 1):
        try:
            return await attempt()
        except ToolFailure as failure:
            if not request.tool.idempotent or failure.error.code == "invalid_arguments" or tries == RETRIES:
                raise
            await asyncio.sleep(RETRY_DELAY_S * (tries + 1))
    raise AssertionError("unreachable")


async def dispatch(
    nc: Client,
    request: DispatchRequest,
    *,
    mcp: McpServers | None = None,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
) -> DispatchResult:
    started = time.perf_counter()
    timeout = request.tool.timeout_seconds or DEFAULT_TIMEOUT_S
    truncated = False  # the HTTP answer was cut at the limit while it was read
    try:
        arguments = parse_arguments(request)
        if request.tool.http is not None:
            try:
                output, truncated = await call_http(request.tool.http, arguments, timeout, max_output_bytes)
            except Refused as refused:
                raise ToolFailure(refused.code, refused.message) from refused
        elif request.tool.kind == "mcp":
            output = await with_retries(request, lambda: call_mcp(mcp, request, arguments, timeout))
        else:
            output = as_text(await with_retries(request, lambda: call_worker(nc, request, arguments, timeout)))
        error = None
    except ToolFailure as failure:
        error = failure.error
        output = json.dumps({"error": error.model_dump()})
    text, cut = bounded(output, max_output_bytes)
    truncated = cut or (error is None and truncated)
    if error is None and truncated and not cut:
        text += "\n[output truncated at the size limit]"
    return DispatchResult(
        output=text, error=error, truncated=truncated, duration_ms=(time.perf_counter() - started) * 1000
    )
