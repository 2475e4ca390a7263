"""OSSA -> Vercel AI SDK settings, following seed 004's mapping tables.

The result has two parts: `extension`, a valid `extensions.vercel_ai` block (the shape the OSSA
schema defines), and `call_settings`, the options a Vercel `streamText`/`generateText` call takes,
which the extension schema has no place for (system prompt, temperature, ...).
"""

from __future__ import annotations

from typing import Any

from ossabus.contracts.agent import AgentDefinition

# litellm provider -> Vercel AI SDK provider (the extension's `provider.name` enum).
VERCEL_PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "google",
    "vertex_ai": "google",
    "mistral": "mistral",
    "groq": "groq",
    "azure": "azure",
    "bedrock": "amazon-bedrock",
    "cohere": "cohere",
    "fireworks_ai": "fireworks",
}
DEFAULT_MAX_STEPS = 5


def to_vercel(definition: AgentDefinition) -> dict[str, Any]:
    llm = definition.llm
    provider: dict[str, Any] = {"name": VERCEL_PROVIDERS.get(llm.litellm_provider or "", "custom")}
    if llm.model:
        provider["model"] = llm.model
    if llm.base_url:
        provider["base_url"] = llm.base_url
    if llm.api_key_env:
        provider["api_key_env"] = llm.api_key_env
    if llm.headers:
        provider["headers"] = llm.headers

    tools = [
        {
            "name": t.function_name or t.name,
            "description": t.description or t.name,
            "parameters": t.parameters,
            "confirmation": t.confirmation,
        }
        for t in definition.tools
        if t.kind not in ("code_interpreter", "file_search")
    ]
    tool_calling: dict[str, Any] = {
        "mode": definition.run_defaults.tool_choice or "auto",
        "max_steps": min(100, max(1, definition.limits.max_steps or DEFAULT_MAX_STEPS)),
        "tools": tools,
    }
    if definition.run_defaults.parallel_tool_calls is not None:
        tool_calling["parallel_tool_calls"] = definition.run_defaults.parallel_tool_calls

    is_task = definition.kind == "Task"
    extension: dict[str, Any] = {
        "provider": provider,
        "stream_protocol": definition.streaming.vercel_protocol or ("text" if is_task else "data"),
        "hooks": {
            "use_chat": {"enabled": definition.kind == "Agent", "api_endpoint": "/api/chat"},
            "use_completion": {"enabled": is_task, "api_endpoint": "/api/completion"},
        },
        "tool_calling": tool_calling,
    }
    output = definition.task.output_schema if definition.task else None
    if output:
        extension["output_schema"] = {"enabled": True, "schema": output, "mode": "json"}

    call_settings: dict[str, Any] = {
        "system": definition.system_prompt,
        "temperature": llm.temperature,
        "topP": llm.top_p,
        "maxOutputTokens": llm.max_tokens,
        "stopSequences": llm.stop,
        "seed": llm.seed,
        "maxRetries": definition.limits.retry.max_attempts - 1,
    }
    return {
        "name": definition.name,
        "extension": extension,
        "call_settings": {k: v for k, v in call_settings.items() if v is not None},
    }
