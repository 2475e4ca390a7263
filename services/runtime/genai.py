"""Spans in OpenTelemetry's GenAI semantic conventions: `invoke_agent <agent>`, `chat <model>`,
`execute_tool <tool>`, and run steps.

Attribute names follow the conventions (`gen_ai.operation.name`, `gen_ai.provider.name`,
`gen_ai.request.model`, `gen_ai.usage.input_tokens`, ...). Prompts and answers go on spans only
when `OSSABUS_TRACE_CONTENT=true`: they are the users' data.
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan, Span, SpanKind, Status, StatusCode

from ossabus.runtime import tracing


def split_model(model: str) -> tuple[str, str]:
    """`openai/gpt-4o` -> (`openai`, `gpt-4o`); a bare model has no provider prefix."""
    provider, _, name = model.partition("/")
    return (provider, name) if name else ("unknown", model)


QUIET = NonRecordingSpan(INVALID_SPAN_CONTEXT)  # for agents whose manifest turns tracing off


def agent_span(
    agent: str, version: Any, conversation_id: str, run_id: str, model: str | None, enabled: bool = True
) -> Span:
    if not enabled:
        return QUIET
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": agent,
        "gen_ai.conversation.id": conversation_id,
        "ossabus.run.id": run_id,
    }
    if version is not None:
        attributes["gen_ai.agent.version"] = str(version)
    if model:
        provider, name = split_model(model)
        attributes |= {"gen_ai.provider.name": provider, "gen_ai.request.model": name}
    return tracing.tracer().start_span(f"invoke_agent {agent}", kind=SpanKind.INTERNAL, attributes=attributes)


def captures(audit: Any, which: str) -> bool:
    """Message content goes on spans only when the operator turned capture on and the agent's own
    `security.audit` (when it declares one) does not keep it off: an agent can only narrow this."""
    return tracing.capture_content() and (audit is None or bool(getattr(audit, which, False)))


def chat_span(
    model: str,
    params: dict[str, Any],
    conversation_id: str | None,
    agent: str | None,
    messages: list,
    enabled: bool = True,
    audit: Any = None,
) -> Span:
    if not enabled:
        return QUIET
    provider, name = split_model(model)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": name,
    }
    if conversation_id:
        attributes["gen_ai.conversation.id"] = conversation_id
    if agent:
        attributes["gen_ai.agent.name"] = agent
    for key, attribute in (
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("max_tokens", "gen_ai.request.max_tokens"),
        ("seed", "gen_ai.request.seed"),
    ):
        if params.get(key) is not None:
            attributes[attribute] = params[key]
    if captures(audit, "log_inputs"):
        attributes["gen_ai.input.messages"] = json.dumps(messages, ensure_ascii=False, default=str)
    return tracing.tracer().start_span(f"chat {name}", kind=SpanKind.CLIENT, attributes=attributes)


def end_chat_span(
    span: Span,
    *,
    response_model: str | None,
    finish_reason: str | None,
    usage: dict[str, int] | None,
    output: str | None = None,
    error: Exception | None = None,
    audit: Any = None,
) -> None:
    if response_model:
        span.set_attribute("gen_ai.response.model", split_model(response_model)[1])
    if finish_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
    if usage:
        span.set_attribute("gen_ai.usage.input_tokens", int(usage.get("prompt_tokens", 0)))
        span.set_attribute("gen_ai.usage.output_tokens", int(usage.get("completion_tokens", 0)))
    if output is not None and captures(audit, "log_outputs"):
        span.set_attribute("gen_ai.output.messages", json.dumps([{"role": "assistant", "content": output}]))
    fail(span, error)
    span.end()


def tool_span(tool: str, call_id: str, kind: str, conversation_id: str | None, agent: str | None) -> Span:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": tool,
        "gen_ai.tool.call.id": call_id,
        "gen_ai.tool.type": "extension" if kind in ("mcp", "http") else "function",
    }
    if conversation_id:
        attributes["gen_ai.conversation.id"] = conversation_id
    if agent:
        attributes["gen_ai.agent.name"] = agent
    return tracing.tracer().start_span(f"execute_tool {tool}", kind=SpanKind.INTERNAL, attributes=attributes)


def step_span(step: Any, agent: str) -> None:
    """A finished run step as a span of its own, from its creation to now (`trace_run_steps`)."""
    span = tracing.tracer().start_span(
        f"run_step {step.type}",
        start_time=int(step.created_at * 1e9),
        attributes={"ossabus.step.id": step.id, "ossabus.run.id": step.run_id, "gen_ai.agent.name": agent},
    )
    span.set_attribute("ossabus.step.status", step.status)
    span.end()


def fail(span: Span, error: BaseException | None, error_type: str | None = None) -> None:
    if error is None and error_type is None:
        return
    span.set_attribute("error.type", error_type or type(error).__name__)
    span.set_status(Status(StatusCode.ERROR, str(error or error_type)[:300]))
