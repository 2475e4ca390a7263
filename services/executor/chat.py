"""Chat completions on the bus: an agent's prompt, tools and limits applied to the client's messages.

Streaming publishes each `chat.completion.chunk` to the request's reply inbox and ends with one
envelope (`{"ok": ..., "result"|"error": ...}`) on the same subject, so the relay reads one ordered
sequence and knows where it ends.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.aio.client import Client

from ossabus.contracts.agent import AgentDefinition, RetryPolicy
from ossabus.contracts.bus import BusError, ChatRequest, Reply
from ossabus.executor import llm
from ossabus.executor import usage as usage_reports
from ossabus.executor.agents import AgentDirectory
from ossabus.runtime import genai
from ossabus.runtime.bus import BusFailure

LLM_ERROR_CODES = {
    "rate_limit_exceeded": "rate_limit_exceeded",
    "invalid_prompt": "invalid_request",
    "server_error": "upstream_error",
}


def answered(response: Any) -> bool:
    """Whether a completion carries text or tool calls (see `llm.NOT_A_COMPLETION`)."""
    choices = getattr(response, "choices", None) or []
    message = getattr(choices[0], "message", None) if choices else None
    return message is not None and bool(getattr(message, "content", None) or getattr(message, "tool_calls", None))


def bus_error(error: llm.LLMError) -> BusError:
    code = "upstream_timeout" if error.timed_out else LLM_ERROR_CODES.get(error.code, "upstream_error")
    return BusError(code=code, message=error.message)  # type: ignore[arg-type]


class ChatCompletions:
    def __init__(self, nc: Client, agents: AgentDirectory):
        self.nc, self.agents = nc, agents

    async def prepare(self, req: ChatRequest) -> tuple[llm.LLMRequest, RetryPolicy]:
        definition: AgentDefinition | None = None
        messages = list(req.messages)
        tools = list(req.tools or [])
        if req.agent:
            definition = await self.agents.definition(name=req.agent, min_version=req.agent_version)
            if definition.system_prompt:
                messages.insert(0, {"role": "system", "content": definition.system_prompt})
            client_tools = {t.get("function", {}).get("name") for t in tools}
            for tool in definition.tools:
                if tool.kind in ("code_interpreter", "file_search") or tool.function_name in client_tools:
                    continue
                tools.append(
                    {
                        "type": "function",
                        "function": {
                            "name": tool.function_name,
                            "description": tool.description or "",
                            "parameters": tool.parameters,
                        },
                    }
                )
        model = llm.resolve_model(definition, None if req.agent else req.model)
        params = {**llm.connection_params(definition), **self._agent_params(definition), **req.params}
        retry = definition.limits.retry if definition else RetryPolicy()
        audit = definition.security.audit if definition else None
        request = llm.LLMRequest(model=model, messages=messages, params=params, tools=tools or None, audit=audit)
        return request, retry

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

    async def complete(self, req: ChatRequest) -> dict[str, Any]:
        """Non-streaming: one upstream call, retried on transient failures."""
        call, retry = await self.prepare(req)
        litellm = llm._litellm()
        await llm.guard(call.params)
        params, total = llm.bounded(call.params)
        attempt = 0
        span = genai.chat_span(call.model, call.params, None, req.agent, call.messages, audit=call.audit)
        while True:
            attempt += 1
            try:
                response = await asyncio.wait_for(
                    litellm.acompletion(
                        model=call.model, messages=call.messages, tools=call.tools, num_retries=0, **params
                    ),
                    total or llm.idle_timeout_s() + llm.connect_timeout_s(),
                )
                if not answered(response):
                    raise llm.LLMError("server_error", llm.NOT_A_COMPLETION, True)
                break
            except Exception as exc:
                error = llm.classify(exc)
                if not error.transient or attempt >= retry.max_attempts:
                    genai.end_chat_span(
                        span, response_model=None, finish_reason=None, usage=None, error=error, audit=call.audit
                    )
                    raise error from exc
                await asyncio.sleep(llm.backoff_delay(retry, attempt))
        choice = response.choices[0]
        message: dict[str, Any] = {"role": "assistant", "content": choice.message.content, "refusal": None}
        if getattr(choice.message, "tool_calls", None):
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in choice.message.tool_calls
            ]
        usage = response.usage
        counts = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        genai.end_chat_span(
            span,
            response_model=getattr(response, "model", None),
            finish_reason=choice.finish_reason,
            usage=counts,
            output=choice.message.content,
            audit=call.audit,
        )
        await self._report_usage(req, call, counts)
        return {
            "id": req.id,
            "object": "chat.completion",
            "created": req.created,
            "model": req.model,
            "choices": [{"index": 0, "message": message, "finish_reason": choice.finish_reason, "logprobs": None}],
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
        }

    async def stream(self, req: ChatRequest, inbox: str) -> None:
        """Streaming: chunks to `inbox`, then the closing envelope (with usage) on the same subject."""
        span, failure, text = None, None, []
        usage, finish, response_model = None, None, None
        try:
            call, retry = await self.prepare(req)
            span = genai.chat_span(call.model, call.params, None, req.agent, call.messages, audit=call.audit)
            first = True
            async for chunk in llm.stream(call, retry):
                response_model = response_model or chunk.model
                if chunk.text:
                    text.append(chunk.text)
                if chunk.usage:
                    usage = chunk.usage
                delta: dict[str, Any] = {}
                if chunk.text:
                    delta["content"] = chunk.text
                if chunk.tool_calls:
                    delta["tool_calls"] = [
                        {
                            "index": d.index,
                            **({"id": d.id, "type": "function"} if d.id else {}),
                            "function": {**({"name": d.name} if d.name else {}), "arguments": d.arguments},
                        }
                        for d in chunk.tool_calls
                    ]
                if chunk.finish_reason:
                    finish = chunk.finish_reason
                if delta or chunk.finish_reason:
                    if first:
                        delta = {"role": "assistant", **delta}
                        first = False
                    await self._chunk(req, inbox, delta, chunk.finish_reason)
            if finish is None:
                await self._chunk(req, inbox, {}, "stop")
            reply: Reply = Reply.success({"usage": usage})
            await self._report_usage(req, call, usage)
        except llm.LLMError as error:
            failure = error
            reply = Reply.failure(bus_error(error))
        except BusFailure as error:
            failure = error
            reply = Reply.failure(error.error)
        if span is not None:
            genai.end_chat_span(
                span,
                response_model=response_model,
                finish_reason=finish,
                usage=usage,
                output="".join(text),
                audit=call.audit,
                error=failure,
            )
        await self.nc.publish(inbox, reply.model_dump_json().encode())

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

    async def _chunk(self, req: ChatRequest, inbox: str, delta: dict[str, Any], finish: str | None) -> None:
        body = {
            "id": req.id,
            "object": "chat.completion.chunk",
            "created": req.created,
            "model": req.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        await self.nc.publish(inbox, json.dumps(body).encode())
        await asyncio.sleep(0)  # let nats-py's flusher write each chunk now; see runtime/events.py
