"""Applying an OpenAI assistant update to an OSSA manifest, in place.

Rewriting the manifest from the Assistant object would lose everything the Assistant object cannot
express (limits, observability, http and MCP tools, other extensions); so each changed field is
written where this manifest keeps it, and everything else is left as it was.
"""

from __future__ import annotations

import copy
from typing import Any

from ossabus.registry.convert_openai import DISPLAY_NAME, RESERVED_ANNOTATIONS, split_model

BUILTIN_CAPABILITIES = {"code_interpreter": "code_execution", "file_search": "retrieval"}


def _dict(parent: dict[str, Any], key: str) -> dict[str, Any]:
    if not isinstance(parent.get(key), dict):
        parent[key] = {}
    return parent[key]


def apply_assistant_update(manifest: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    m = copy.deepcopy(manifest)
    metadata = _dict(m, "metadata")
    spec = _dict(m, "spec")
    extensions = m.get("extensions") if isinstance(m.get("extensions"), dict) else {}
    oa = extensions.get("openai_assistants") if isinstance(extensions.get("openai_assistants"), dict) else None

    def openai_extension() -> dict[str, Any]:
        nonlocal oa
        if oa is None:
            oa = _dict(_dict(m, "extensions"), "openai_assistants")
        return oa

    if "name" in changes:
        annotations = _dict(metadata, "annotations")
        if changes["name"] and changes["name"] != metadata.get("name"):
            annotations[DISPLAY_NAME] = changes["name"]
        else:
            annotations.pop(DISPLAY_NAME, None)
    if "description" in changes:
        if changes["description"] is None:
            metadata.pop("description", None)
        else:
            metadata["description"] = changes["description"]
    if "metadata" in changes:
        reserved = {k: v for k, v in _dict(metadata, "annotations").items() if k in RESERVED_ANNOTATIONS}
        metadata["annotations"] = {**(changes["metadata"] or {}), **reserved}
    if "instructions" in changes:
        _set_instructions(m, spec, oa, changes["instructions"] or "")
    if changes.get("model"):
        _set_model(spec, oa, extensions, changes["model"])
    for field, camel in (("temperature", "temperature"), ("top_p", "topP")):
        if field in changes:
            _set_llm_param(spec, field, camel, changes[field])
    if "tools" in changes:
        _set_tools(spec, extensions, openai_extension(), changes["tools"] or [])
    if "tool_resources" in changes:
        openai_extension()["tool_resources"] = changes["tool_resources"]
    if "response_format" in changes:
        _dict(openai_extension(), "run_config")["response_format"] = changes["response_format"]
    return m


def _set_instructions(m: dict[str, Any], spec: dict[str, Any], oa: dict[str, Any] | None, text: str) -> None:
    if str(m.get("apiVersion", "")).startswith("ossa/v0.2") and "prompts" not in spec:
        spec["role"] = text
    else:
        _dict(spec, "prompts")["system"] = text
        if isinstance(spec.get("role"), str) and len(spec["role"].split()) > 1:
            spec.pop("role")  # a prompt-like role would otherwise shadow nothing but confuse readers
    if oa is not None and "instructions" in oa:
        oa["instructions"] = text


def _set_model(spec: dict[str, Any], oa: dict[str, Any] | None, extensions: dict[str, Any], value: str) -> None:
    provider, model = split_model(value)
    if isinstance(spec.get("model"), dict) and not isinstance(spec.get("llm"), dict):
        spec["model"].update(name=model, provider=provider)
    else:
        _dict(spec, "llm").update(provider=provider, model=model)
    if oa is not None:
        oa.pop("model", None)  # the spec now says which model; a stale copy would contradict it
    vercel = extensions.get("vercel_ai")
    if isinstance(vercel, dict) and isinstance(vercel.get("provider"), dict):
        vercel["provider"].pop("model", None)


def _set_llm_param(spec: dict[str, Any], field: str, camel: str, value: Any) -> None:
    if isinstance(spec.get("model"), dict) and not isinstance(spec.get("llm"), dict):
        params = _dict(spec["model"], "parameters")
        key = field
    else:
        params = _dict(spec, "llm")
        key = camel
    params.pop(field, None)
    params.pop(camel, None)
    if value is not None:
        params[key] = value


def _set_tools(
    spec: dict[str, Any], extensions: dict[str, Any], oa: dict[str, Any], tools: list[dict[str, Any]]
) -> None:
    """The function tools become exactly `tools`; server-side http and MCP tools stay."""
    kept = [t for t in spec.get("tools") or [] if isinstance(t, dict) and t.get("type") not in (None, "function")]
    functions = [t for t in tools if t.get("type") == "function"]
    spec_tools = kept + [
        {
            "type": "function",
            "name": t["function"]["name"],
            **({"description": t["function"]["description"]} if t["function"].get("description") else {}),
            **({"parameters": t["function"]["parameters"]} if t["function"].get("parameters") else {}),
        }
        for t in functions
    ]
    if spec_tools:
        spec["tools"] = spec_tools
    else:
        spec.pop("tools", None)
    capabilities = [
        c for c in spec.get("capabilities") or [] if isinstance(c, str) and c not in BUILTIN_CAPABILITIES.values()
    ]
    capabilities += [BUILTIN_CAPABILITIES[t["type"]] for t in tools if t.get("type") in BUILTIN_CAPABILITIES]
    if capabilities:
        spec["capabilities"] = capabilities
    else:
        spec.pop("capabilities", None)
    oa["tools"] = tools
    mcp = extensions.get("mcp")
    if isinstance(mcp, dict):
        mcp.pop("tools", None)
    vercel = extensions.get("vercel_ai")
    if isinstance(vercel, dict) and isinstance(vercel.get("tool_calling"), dict):
        vercel["tool_calling"].pop("tools", None)
