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


# Vercel AI SDK provider -> the provider name an OSSA manifest writes (the first litellm id above).
OSSA_PROVIDERS = {"google": "google", "amazon-bedrock": "bedrock", "fireworks": "fireworks"}
SETTING_TO_PARAMETER = {
    "temperature": "temperature",
    "topP": "topP",
    "maxOutputTokens": "maxTokens",
    "stopSequences": "stop",
    "seed": "seed",
}


def from_vercel(settings: dict[str, Any], api_version: str = "ossa/v0.5") -> dict[str, Any]:
    """Vercel AI settings (what `to_vercel` makes) -> an OSSA manifest in the current shape.

    The extension block goes back to `extensions.vercel_ai` whole (stream protocol, hooks, output
    schema), so a round trip loses nothing the extension holds; the call settings become the
    instructions and the model block's parameters.
    """
    extension = dict(settings.get("extension") or {})
    call = settings.get("call_settings") or {}
    provider = extension.get("provider") or {}
    parameters = {name: call[key] for key, name in SETTING_TO_PARAMETER.items() if call.get(key) is not None}
    model: dict[str, Any] = {}
    if provider.get("name") and provider["name"] != "custom":
        model["provider"] = OSSA_PROVIDERS.get(provider["name"], provider["name"])
    for key in ("model", "base_url", "api_key_env"):
        if provider.get(key):
            model[key] = provider[key]
    if parameters:
        model["parameters"] = parameters
    calling = dict(extension.get("tool_calling") or {})
    tools = [
        {
            "type": "function",
            "name": tool["name"],
            "description": tool.get("description") or tool["name"],
            "input_schema": tool.get("parameters") or {"type": "object", "properties": {}},
            **({"requires_approval": True} if tool.get("confirmation") else {}),
        }
        for tool in calling.pop("tools", None) or []
    ]
    extension["tool_calling"] = calling
    is_task = bool((extension.get("hooks") or {}).get("use_completion", {}).get("enabled"))
    spec: dict[str, Any] = {}
    if call.get("system"):
        spec["instructions"] = call["system"]
    if model:
        spec["model"] = model
    if tools:
        spec["tools"] = tools
    if call.get("maxRetries") is not None:
        spec.setdefault("model", {})["retry"] = {"max_attempts": int(call["maxRetries"]) + 1}
    return {
        "apiVersion": api_version,
        "kind": "Task" if is_task else "Agent",
        "metadata": {"name": settings["name"]},
        "spec": spec,
        "extensions": {"vercel_ai": extension},
    }
