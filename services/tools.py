"""Serving tools to ossabus agents from any Python process, in a few lines.

    worker = ToolWorker("nats://127.0.0.1:4222")

    @worker.tool(parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    async def get_weather(city: str) -> dict:
        return {"city": city, "sky": "clear"}

    asyncio.run(worker.serve())     # until SIGINT/SIGTERM

Each tool is served on `ossa.tools.<name>` in the queue group `ossa-tool-<name>` (start more
processes to share the load) and announced on `ossa.announce.tools.<name>`, so agents whose
manifests declare it call it server-side. The wire format is `contracts/tools.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from ossabus.contracts import subjects
from ossabus.contracts.ids import new_id
from ossabus.contracts.tools import ToolAnnouncement, ToolCallReply, ToolCallRequest, ToolError
from ossabus.runtime import tracing
from ossabus.runtime.bus_auth import default_url

log = logging.getLogger(__name__)
ANNOUNCE_EVERY_S = 30.0


@dataclass
class _Tool:
    name: str
    func: Callable[..., Any]
    description: str | None
    parameters: dict[str, Any]


class ToolWorker:
    def __init__(self, nats_url: str | None = None, announce_every_s: float = ANNOUNCE_EVERY_S, **options: Any):
        """`nats_url` None: `NATS_URL`, else the local `ossabus up`'s `worker` credentials (see
        `ossabus credentials worker`); `options` go to nats.connect (`user_credentials`, `tls`, ...)."""
        self.nats_url = nats_url or default_url("worker")
        self.options = options
        self.announce_every_s = announce_every_s
        self.worker_id = new_id("worker")
        self.tools: dict[str, _Tool] = {}
        self.nc: Client | None = None
        self._tasks: list[asyncio.Task] = []

    def tool(
        self, name: str | None = None, *, description: str | None = None, parameters: dict[str, Any] | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a function (sync or async) taking the tool's arguments as keyword arguments."""

        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            tool_name = subjects.token(name or func.__name__)
            self.tools[tool_name] = _Tool(
                tool_name, func, description or inspect.getdoc(func), parameters or {"type": "object", "properties": {}}
            )
            return func

        return register

    async def start(self) -> None:
        self.nc = await nats.connect(
            self.nats_url, name=f"ossabus-tools-{self.worker_id}", max_reconnect_attempts=-1, **self.options
        )
        for tool in self.tools.values():
            await self.nc.subscribe(
                subjects.tool(tool.name), queue=subjects.tool_queue(tool.name), cb=self._handler(tool)
            )
        await self.nc.subscribe(subjects.TOOL_ROLL_CALL, cb=self._roll_call)
        await self.nc.flush(timeout=10)  # subscribed on the server before anyone is told about it
        await self.announce()
        self._tasks.append(asyncio.create_task(self._announce_forever()))
        log.info("serving tools: %s", ", ".join(self.tools))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.nc is not None:
            await self.nc.drain()

    async def serve(self) -> None:
        """Start, then run until SIGINT or SIGTERM."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def announce(self) -> None:
        assert self.nc is not None
        for tool in self.tools.values():
            note = ToolAnnouncement(
                name=tool.name,
                description=tool.description,
                parameters=tool.parameters,
                worker=self.worker_id,
                every_s=self.announce_every_s,
            )
            await self.nc.publish(subjects.tool_announcement(tool.name), note.model_dump_json().encode())

    async def _announce_forever(self) -> None:
        while True:
            await asyncio.sleep(self.announce_every_s)
            with contextlib.suppress(Exception):
                await self.announce()

    async def _roll_call(self, _msg) -> None:
        with contextlib.suppress(Exception):
            await self.announce()

    def _handler(self, tool: _Tool):
        async def handle(msg) -> None:
            # the call continues the run's trace when this process traces (OSSABUS_TRACES_FILE / OTLP)
            span = tracing.tracer().start_span(
                f"execute_tool {tool.name}",
                context=tracing.context_from(msg.headers),
                kind=SpanKind.SERVER,
                attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool.name},
            )
            try:
                request = ToolCallRequest.model_validate_json(msg.data)
                span.set_attribute("gen_ai.tool.call.id", request.call_id)
                with trace.use_span(span):
                    result = tool.func(**request.arguments)
                    if inspect.isawaitable(result):
                        result = await result
                reply = ToolCallReply(output=result)
            except ValidationError as exc:
                reply = ToolCallReply(error=ToolError(code="invalid_request", message=str(exc.errors()[0]["msg"])))
            except TypeError as exc:
                reply = ToolCallReply(error=ToolError(code="invalid_arguments", message=str(exc)))
            except Exception as exc:  # the tool's own failure: tell the model, keep serving
                log.exception("tool %s failed", tool.name)
                reply = ToolCallReply(error=ToolError(code="tool_failed", message=f"{type(exc).__name__}: {exc}"))
            if reply.error is not None:
                span.set_attribute("error.type", reply.error.code)
            span.end()
            try:
                await msg.respond(reply.model_dump_json().encode())
            except TypeError:  # output not JSON-serialisable
                fallback = ToolCallReply(output=json.dumps(reply.output, default=str))
                await msg.respond(fallback.model_dump_json().encode())

        return handle
