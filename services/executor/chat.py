"""Chat completions on the bus: an agent's prompt, tools and limits applied to the client's messages.

Streaming publishes each `chat.completion.chunk` to the request's reply inbox and ends with one
envelope (`{"ok": ..., "result"|"error": ...}`) on the same subject, so the relay reads one ordered
sequence and knows where it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.aio.client import Client

from ossabus.contracts.agent import AgentDefinition, RetryPolicy
from ossabus.contracts.bus import BusError, ChatRequest, Reply
from ossabus.executor import llm
from ossabus.executor import usage as usage_reports
from ossabus.executor.chat_tools import MAX_SERVER_ROUNDS, ServerTools, model_form, run_calls, server_tools
from ossabus.executor.offered_tools import McpListings
from ossabus.runtime import genai
from ossabus.runtime.agents import AgentDirectory
from ossabus.runtime.bus import BusFailure
from ossabus.runtime.coalesce import Coalescer
from ossabus.runtime.tool_directory import ToolDirectory

LLM_ERROR_CODES = {
    "rate_limit_exceeded": "rate_limit_exceeded",
    "invalid_prompt": "invalid_request",
    "server_error": "upstream_error",
}


def merged(deltas: list[tuple[dict[str, Any], Any]]) -> tuple[dict[str, Any], None, Any]:
    """Held text deltas as one chunk's (delta, finish_reason, logprobs): the texts joined, the
    logprobs' token lists joined, the role kept from the first."""
    if len(deltas) == 1:
        delta, logprobs = deltas[0]
        return delta, None, logprobs
    out: dict[str, Any] = {"role": "assistant"} if any("role" in d for d, _ in deltas) else {}
    text = "".join(d.get("content") or "" for d, _ in deltas)
    if text:
        out["content"] = text
    tokens = [entry for _, lp in deltas if lp for entry in (lp.get("content") or [])]
    logprobs = {"content": tokens, "refusal": None} if any(lp for _, lp in deltas) else None
    return out, None, logprobs


def bus_error(error: llm.LLMError) -> BusError:
    code = "upstream_timeout" if error.timed_out else LLM_ERROR_CODES.get(error.code, "upstream_error")
    return BusError(code=code, message=error.message)  # type: ignore[arg-type]


@dataclass
class StreamedTurn:
    text: list[str] = field(default_factory=list)
    partial: dict[int, dict[str, str]] = field(default_factory=dict)
    usage: dict[str, int] | None = None
    finish: str | None = None
    sent: bool = False  # whether any chunk of it went to the client

    @property
    def calls(self) -> list[dict[str, Any]]:
        return [
            {"id": p["id"], "type": "function", "function": {"name": p["name"], "arguments": p["arguments"]}}
            for _, p in sorted(self.partial.items())
        ]


class ChatCompletions:
    def __init__(
        self,
        nc: Client,
        agents: AgentDirectory,
        tools: ToolDirectory | None = None,
        listings: McpListings | None = None,
    ):
        self.nc, self.agents = nc, agents
        self.tools = tools or ToolDirectory()
        self.listings = listings or McpListings(agents.bus)

    async def prepare(self, req: ChatRequest) -> tuple[llm.LLMRequest, RetryPolicy, ServerTools]:
        """The model call: the agent's prompt before the client's messages, the client's tools and
        the agent's server-side tools offered (an agent tool nobody here can run is not offered:
        the client could not answer it)."""
        definition: AgentDefinition | None = None
        messages = list(req.messages)
        tools = list(req.tools or [])
        server = ServerTools()
        if req.agent:
            definition = await self.agents.definition(name=req.agent, min_version=req.agent_version)
            if definition.system_prompt:
                messages.insert(0, {"role": "system", "content": definition.system_prompt})
            client_names = {t.get("function", {}).get("name") for t in tools}
            server = await server_tools(definition, client_names, self.tools, self.listings)
            tools += [model_form(tool) for tool in server.by_name.values()]
        model = llm.resolve_model(definition, None if req.agent else req.model)
        params = {**llm.connection_params(definition), **self._agent_params(definition), **req.params}
        params = llm.wire_params(model, params)
        refused = llm.refused_param(model, params)
        if refused is not None:
            raise BusFailure.of(
                "invalid_request", f"{refused} is not supported by the provider of {model}", param=refused
            )
        retry = definition.limits.retry if definition else RetryPolicy()
        audit = definition.security.audit if definition else None
        client = definition.llm.client if definition else None
        request = llm.LLMRequest(
            model=model, messages=messages, params=params, tools=tools or None, audit=audit, client=client
        )
        return request, retry, server

    @staticmethod
    def _agent_params(definition: AgentDefinition | None) -> dict[str, Any]:
        if definition is None:
            return {}
        s = definition.llm
        pairs = (
            ("temperature", s.temperature),
            ("top_p", s.top_p),
            ("max_tokens", s.max_tokens),
            ("stop", s.stop),
            ("seed", s.seed),
        )
        return {k: v for k, v in pairs if v is not None}

    async def _one_completion(self, req: ChatRequest, call: llm.LLMRequest, retry: RetryPolicy) -> llm.Completion:
        """One upstream call, retried on transient failures, traced as one chat span."""
        span = genai.chat_span(call.model, call.params, None, req.agent, call.messages, audit=call.audit)
        try:
            answer = await llm.complete(call, retry)
        except llm.LLMError as error:
            genai.end_chat_span(
                span, response_model=None, finish_reason=None, usage=None, error=error, audit=call.audit
            )
            raise
        genai.end_chat_span(
            span,
            response_model=answer.model,
            finish_reason=answer.finish_reason,
            usage=answer.usage,
            output=answer.text,
            audit=call.audit,
        )
        return answer

    async def complete(self, req: ChatRequest) -> dict[str, Any]:
        """Non-streaming: model turns until the answer needs nothing the server can run."""
        call, retry, server = await self.prepare(req)
        totals = {"prompt_tokens": 0, "completion_tokens": 0}
        for _ in range(MAX_SERVER_ROUNDS + 1):
            answer = await self._one_completion(req, call, retry)
            for key in totals:
                totals[key] += (answer.usage or {}).get(key, 0)
            theirs = [c for c in answer.tool_calls if not server.runs(c["function"]["name"])]
            ours = [c for c in answer.tool_calls if server.runs(c["function"]["name"])]
            if not ours or theirs:
                break
            results = await run_calls(self.agents.bus, server, ours, req.id)
            call.messages = [*call.messages, {"role": "assistant", "content": answer.text, "tool_calls": ours}]
            call.messages += results
        await self._report_usage(req, call, totals)
        message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
        if theirs:
            message["tool_calls"] = theirs
        finish = "tool_calls" if theirs else (answer.finish_reason if answer.finish_reason != "tool_calls" else "stop")
        return {
            "id": req.id,
            "object": "chat.completion",
            "created": req.created,
            "model": req.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": finish,
                    "logprobs": llm.openai_logprobs(answer.logprobs),
                }
            ],
            "usage": {**totals, "total_tokens": totals["prompt_tokens"] + totals["completion_tokens"]},
        }

    async def stream(self, req: ChatRequest, inbox: str) -> None:
        """Streaming: chunks to `inbox`, then the closing envelope (with usage) on the same subject.

        Text goes out as it comes. Tool call deltas are held until the turn ends: calls the server
        runs are run and the model is asked again; calls for the client go out whole, then the end."""
        totals = {"prompt_tokens": 0, "completion_tokens": 0}
        try:
            call, retry, server = await self.prepare(req)
            first = True
            for _ in range(MAX_SERVER_ROUNDS + 1):
                turn = await self._stream_turn(req, inbox, call, retry, first)
                first = first and not turn.sent
                for key in totals:
                    totals[key] += (turn.usage or {}).get(key, 0)
                theirs = [c for c in turn.calls if not server.runs(c["function"]["name"])]
                ours = [c for c in turn.calls if server.runs(c["function"]["name"])]
                if ours and not theirs:
                    results = await run_calls(self.agents.bus, server, ours, req.id)
                    text = "".join(turn.text) or None
                    call.messages = [*call.messages, {"role": "assistant", "content": text, "tool_calls": ours}]
                    call.messages += results
                    continue
                if theirs:
                    delta: dict[str, Any] = {
                        "tool_calls": [
                            {"index": i, "id": c["id"], "type": "function", "function": c["function"]}
                            for i, c in enumerate(theirs)
                        ]
                    }
                    await self._chunk(req, inbox, {"role": "assistant", **delta} if first else delta, "tool_calls")
                else:
                    finish = turn.finish if turn.finish not in (None, "tool_calls") else "stop"
                    await self._chunk(req, inbox, {"role": "assistant"} if first else {}, finish)
                break
            usage = {**totals, "total_tokens": totals["prompt_tokens"] + totals["completion_tokens"]}
            reply: Reply = Reply.success({"usage": usage})
            await self._report_usage(req, call, usage)
        except llm.LLMError as error:
            reply = Reply.failure(bus_error(error))
        except BusFailure as error:
            reply = Reply.failure(error.error)
        await self.nc.publish(inbox, reply.model_dump_json().encode())

    async def _stream_turn(
        self, req: ChatRequest, inbox: str, call: llm.LLMRequest, retry: RetryPolicy, first: bool
    ) -> StreamedTurn:
        """One model turn: its text forwarded now, its tool calls gathered."""
        turn = StreamedTurn()
        span = genai.chat_span(call.model, call.params, None, req.agent, call.messages, audit=call.audit)
        response_model = None

        async def send(deltas: list[tuple[dict[str, Any], Any]]) -> None:
            await self._chunk(req, inbox, *merged(deltas))

        held = Coalescer(send)
        try:
            async for chunk in llm.stream(call, retry):
                response_model = response_model or chunk.model
                if chunk.usage:
                    turn.usage = chunk.usage
                if chunk.finish_reason:
                    turn.finish = chunk.finish_reason
                for d in chunk.tool_calls:
                    entry = turn.partial.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                    entry["id"] = d.id or entry["id"]
                    entry["name"] = d.name or entry["name"]
                    entry["arguments"] += d.arguments
                if chunk.text or chunk.logprobs:
                    delta: dict[str, Any] = {"content": chunk.text} if chunk.text else {}
                    if first and not turn.sent:
                        delta = {"role": "assistant", **delta}
                    turn.sent = True
                    if chunk.text:
                        turn.text.append(chunk.text)
                    await held.add((delta, chunk.logprobs))
            await held.flush()
        except asyncio.CancelledError:
            held.discard()
            raise
        except Exception as exc:
            with contextlib.suppress(Exception):
                await held.flush()  # what the client was about to see, before the error that ends it
            genai.end_chat_span(span, response_model=None, finish_reason=None, usage=None, error=exc, audit=call.audit)
            raise
        genai.end_chat_span(
            span,
            response_model=response_model,
            finish_reason=turn.finish,
            usage=turn.usage,
            output="".join(turn.text),
            audit=call.audit,
        )
        return turn

    async def _report_usage(self, req: ChatRequest, call: llm.LLMRequest, usage: dict[str, int] | None) -> None:
        await usage_reports.report(
            self.nc,
            record_id=req.id,
            agent=req.agent,
            model=call.model,
            kind="chat",
            principal=req.principal,
            project=req.project,
            usage=usage,
        )

    async def _chunk(
        self, req: ChatRequest, inbox: str, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
    ) -> None:
        body = {
            "id": req.id,
            "object": "chat.completion.chunk",
            "created": req.created,
            "model": req.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}],
        }
        await self.nc.publish(inbox, orjson.dumps(body))
        await asyncio.sleep(0)  # let nats-py's flusher write each chunk now; see runtime/events.py
