"""OSSA Agent <-> OpenAI Assistant object, following the mapping tables of seed 002.

name <-> metadata.name, description <-> metadata.description, instructions <-> system prompt,
model <-> llm provider/model, tools <-> capabilities and tools (code_interpreter <-> code_execution,
file_search <-> retrieval, function <-> function / MCP / http tools), tool_resources <-> the
extension's tool_resources, metadata <-> metadata.annotations. Converting an assistant to OSSA
and back yields the same assistant.
"""

from __future__ import annotations

import re
from typing import Any

from ossabus.contracts.agent import AgentDefinition
from ossabus.contracts.openai_objects import (
    Assistant,
    AssistantTool,
    CodeInterpreterTool,
    FileSearchTool,
    FunctionObject,
    FunctionTool,
)
from ossabus.contracts.ossa import OssaManifest, OssaMetadata
from ossabus.registry.providers import PROVIDER_ALIASES, infer_provider

IMPORT_API_VERSION = "ossa/v0.3.4"
# An assistant's free-text name ("Data Analyst") cannot be a manifest name; it travels in this
# annotation and is not part of the assistant's OpenAI metadata.
DISPLAY_NAME = "ossabus.io/display-name"
RESERVED_ANNOTATIONS = (DISPLAY_NAME,)
_ASSISTANT_ID = re.compile(r"^asst_[a-zA-Z0-9]+$")
METADATA_MAX_KEYS = 16


def assistant_id_for(name: str) -> str:
    """The `asst_` id of a manifest that declares none: its name with `-` written `X`.

    Manifest names are lowercase, so this is reversible (`name_from_assistant_id`) and needs no index,
    and it stays within `^asst_[a-zA-Z0-9]+$`, the pattern OSSA's OpenAI extension requires.
    """
    return "asst_" + name.replace("-", "X")


def name_from_assistant_id(assistant_id: str) -> str | None:
    """The manifest name an id made by `assistant_id_for` stands for, or None."""
    if not assistant_id.startswith("asst_"):
        return None
    name = assistant_id.removeprefix("asst_").replace("X", "-")
    return name if re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63 else None


def assistant_model(definition: AgentDefinition) -> str:
    """OpenAI models keep their bare name; any other provider is named `provider/model`."""
    llm = definition.llm
    if llm.model is None:
        return ""
    if llm.litellm_provider == "openai":
        return llm.model.split("/", 1)[1] if llm.model.startswith("openai/") else llm.model
    return llm.litellm_model or llm.model


def to_assistant(definition: AgentDefinition, *, created_at: int) -> Assistant:
    tools: list[AssistantTool] = []
    for tool in definition.tools:
        if tool.kind == "code_interpreter":
            tools.append(CodeInterpreterTool())
        elif tool.kind == "file_search":
            tools.append(FileSearchTool())
        else:
            tools.append(
                FunctionTool(
                    function=FunctionObject(
                        name=tool.function_name or tool.name,
                        description=tool.description,
                        parameters=tool.parameters,
                        strict=tool.strict,
                    )
                )
            )
    metadata = {
        str(k): v if isinstance(v, str) else str(v)
        for k, v in definition.annotations.items()
        if k not in RESERVED_ANNOTATIONS
    }
    display_name = definition.annotations.get(DISPLAY_NAME)
    return Assistant(
        id=definition.openai_assistant_id or assistant_id_for(definition.name),
        created_at=created_at,
        name=display_name if isinstance(display_name, str) else definition.name,
        description=definition.description,
        model=assistant_model(definition),
        instructions=definition.system_prompt,
        tools=tools,
        tool_resources=definition.tool_resources or None,
        metadata=dict(list(metadata.items())[:METADATA_MAX_KEYS]),
        temperature=definition.llm.temperature,
        top_p=definition.llm.top_p,
        response_format=definition.run_defaults.response_format,
    )


def slug(text: str, limit: int = 63) -> str:
    """A DNS-1123 label from free text: `Data Analyst` -> `data-analyst`."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out[:limit].strip("-")


def split_model(model: str) -> tuple[str, str]:
    """`anthropic/claude-3` -> (anthropic, claude-3); a bare OpenAI model -> (openai, model)."""
    head, _, rest = model.partition("/")
    if rest and head.lower() in PROVIDER_ALIASES:
        return head.lower(), rest
    return (infer_provider(model) or "openai"), model


def from_assistant(assistant: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """An OSSA v0.3.4 Agent manifest (as a dict) from an OpenAI Assistant object.

    `name` overrides the manifest name otherwise made from the assistant's name or id.
    """
    parsed = Assistant.model_validate(assistant)
    name = name or slug(parsed.name or "") or slug(f"assistant-{parsed.id.removeprefix('asst_')}")
    metadata: dict[str, Any] = {"name": name, "version": "1.0.0"}
    if parsed.description:
        metadata["description"] = parsed.description
    annotations = dict(parsed.metadata)
    if parsed.name and parsed.name != name:
        annotations[DISPLAY_NAME] = parsed.name
    if annotations:
        metadata["annotations"] = annotations

    spec: dict[str, Any] = {}
    if parsed.instructions:
        spec["prompts"] = {"system": parsed.instructions}
    if parsed.model:
        provider, model = split_model(parsed.model)
        llm: dict[str, Any] = {"provider": provider, "model": model}
        if parsed.temperature is not None:
            llm["temperature"] = parsed.temperature
        if parsed.top_p is not None:
            llm["topP"] = parsed.top_p
        spec["llm"] = llm

    capabilities: list[str] = []
    spec_tools: list[dict[str, Any]] = []
    openai_tools: list[dict[str, Any]] = []
    for tool in parsed.tools:
        if isinstance(tool, CodeInterpreterTool):
            capabilities.append("code_execution")
            openai_tools.append({"type": "code_interpreter"})
        elif isinstance(tool, FileSearchTool):
            capabilities.append("retrieval")
            openai_tools.append({"type": "file_search"})
        else:
            fn = tool.function
            entry: dict[str, Any] = {"type": "function", "name": fn.name}
            if fn.description is not None:
                entry["description"] = fn.description
            if fn.parameters is not None:
                entry["parameters"] = fn.parameters
            spec_tools.append(entry)
            openai_tools.append({"type": "function", "function": fn.model_dump(exclude_none=True)})
    if capabilities:
        spec["capabilities"] = capabilities
    if spec_tools:
        spec["tools"] = spec_tools

    extension: dict[str, Any] = {}
    if _ASSISTANT_ID.fullmatch(parsed.id) and parsed.id != assistant_id_for(name):
        extension["assistant_id"] = parsed.id
    if openai_tools:
        extension["tools"] = openai_tools
    if parsed.tool_resources:
        extension["tool_resources"] = parsed.tool_resources
    if parsed.response_format is not None:
        extension["run_config"] = {"response_format": parsed.response_format}

    envelope = OssaManifest(
        apiVersion=IMPORT_API_VERSION,
        kind="Agent",
        metadata=OssaMetadata(**metadata),
        spec=spec,
        extensions={"openai_assistants": extension} if extension else None,
    )
    manifest = envelope.to_document()
    for empty in ("labels", "annotations"):
        if not manifest["metadata"].get(empty):
            manifest["metadata"].pop(empty, None)
    return manifest
