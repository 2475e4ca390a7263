"""Making a new run from an agent and OpenAI's run-create parameters, for the relay and the executor."""

from __future__ import annotations

import time
from typing import Any

from pydantic import TypeAdapter

from ossabus.contracts import subjects
from ossabus.contracts.agent import AgentDefinition
from ossabus.contracts.bus import ManifestRecord
from ossabus.contracts.ids import new_id
from ossabus.contracts.openai_objects import AssistantTool, Run
from ossabus.registry.convert_openai import to_assistant

DEFAULT_RUN_TIMEOUT_S = 600
_TOOLS = TypeAdapter(list[AssistantTool])


def new_run(thread_id: str, record: ManifestRecord, params: dict[str, Any], *, run_id: str | None = None) -> Run:
    """The run as OpenAI describes it: the request's value, else the assistant's, else the default.

    `params` holds OpenAI run-create parameters that were given (absent = not given);
    `additional_instructions` is appended to the instructions, as OpenAI does.
    """
    definition = record.definition
    assistant = to_assistant(definition, created_at=record.created_at)
    defaults = definition.run_defaults
    created = int(time.time())

    def given(key: str, fallback: Any) -> Any:
        value = params.get(key)
        return fallback if value is None else value

    instructions = given("instructions", assistant.instructions or "")
    extra = params.get("additional_instructions")
    if extra:
        instructions = f"{instructions}\n\n{extra}" if instructions else extra
    truncation = given("truncation_strategy", defaults.truncation_strategy or {"type": "auto"})
    tools = _TOOLS.validate_python(params["tools"]) if params.get("tools") is not None else assistant.tools
    return Run(
        id=run_id or new_id("run"),
        created_at=created,
        thread_id=thread_id,
        assistant_id=params.get("assistant_id") or assistant.id,
        model=given("model", assistant.model),
        instructions=instructions,
        tools=tools,
        metadata=given("metadata", {}),
        temperature=given("temperature", assistant.temperature),
        top_p=given("top_p", assistant.top_p),
        max_prompt_tokens=given("max_prompt_tokens", definition.limits.max_prompt_tokens),
        max_completion_tokens=given("max_completion_tokens", definition.limits.max_completion_tokens),
        truncation_strategy={"type": truncation.get("type", "auto"), "last_messages": truncation.get("last_messages")},
        response_format=given(
            "response_format", assistant.response_format if assistant.response_format is not None else "auto"
        ),
        tool_choice=given("tool_choice", defaults.tool_choice or "auto"),
        parallel_tool_calls=given(
            "parallel_tool_calls", defaults.parallel_tool_calls if defaults.parallel_tool_calls is not None else True
        ),
        expires_at=created + int(definition.limits.timeout_seconds or DEFAULT_RUN_TIMEOUT_S),
    )


def plain_model_record(model: str) -> ManifestRecord:
    """What a run on a provider model rather than an agent runs as (a Responses request whose
    `model` names no agent): no prompt, no server-side tools, no limits of its own; `model` is
    called as given."""
    definition = AgentDefinition(name=subjects.PLAIN_LLM_AGENT, kind="Agent", api_version="ossa/v0.5")
    return ManifestRecord(
        name=subjects.PLAIN_LLM_AGENT,
        kind="Agent",
        api_version="ossa/v0.5",
        version=1,
        source="builtin",
        created_at=0,
        updated_at=0,
        format="yaml",
        raw="",
        manifest={},
        definition=definition,
        description=f"the provider model {model}",
    )
