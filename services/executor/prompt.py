"""Building the model's messages for one turn of a run.

Thread messages from before the run come first (truncated per the run's strategy); then the run's
own turns, rebuilt from its steps in order: what the assistant said, the tool calls it made and
the outputs they returned. Rebuilding from steps (not from a buffer in memory) is what lets any
executor continue a run another one started.
"""

from __future__ import annotations

from typing import Any

from ossabus.contracts.openai_objects import Message, Run, RunStep, ToolCallsDetails
from ossabus.executor.llm import count_tokens


class PromptTooLong(Exception):
    """Even the newest message does not fit in max_prompt_tokens."""


def system_message(run: Run) -> list[dict[str, Any]]:
    """The run's instructions (the relay already appended `additional_instructions`, as OpenAI does)."""
    return [{"role": "system", "content": run.instructions}] if run.instructions else []


def history(messages: list[Message], run: Run) -> list[dict[str, Any]]:
    """Thread messages written before this run, as chat messages (an entry that stands for more
    than text, such as a Responses client's function calls with their outputs, as what it holds)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.run_id == run.id or m.status == "in_progress":
            continue
        if m.chat:
            out.extend(m.chat)
        elif m.text:
            out.append({"role": m.role, "content": m.text})
    return out


def run_turns(steps: list[RunStep], messages: dict[str, Message]) -> list[dict[str, Any]]:
    """This run's earlier turns: assistant text, tool calls, tool outputs."""
    out: list[dict[str, Any]] = []
    for step in steps:
        details = step.step_details
        if isinstance(details, ToolCallsDetails):
            calls = [c for c in details.tool_calls if c.function.output is not None]
            if not calls:
                continue
            out.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.function.name, "arguments": c.function.arguments},
                        }
                        for c in calls
                    ],
                }
            )
            out.extend({"role": "tool", "tool_call_id": c.id, "content": c.function.output} for c in calls)
        elif step.status == "completed":
            message = messages.get(details.message_creation["message_id"])
            if message is not None and message.text:
                out.append({"role": "assistant", "content": message.text})
    return out


def truncate(
    system: list[dict[str, Any]],
    past: list[dict[str, Any]],
    turns: list[dict[str, Any]],
    run: Run,
    model: str,
) -> list[dict[str, Any]]:
    """Apply `truncation_strategy` and `max_prompt_tokens`; raise PromptTooLong when nothing fits."""
    strategy = run.truncation_strategy or {"type": "auto"}
    if strategy.get("type") == "last_messages" and strategy.get("last_messages"):
        past = past[-int(strategy["last_messages"]) :]
    if run.max_prompt_tokens is None:
        return [*system, *past, *turns]
    while True:
        messages = [*system, *past, *turns]
        if count_tokens(model, messages) <= run.max_prompt_tokens:
            return messages
        if len(past) <= 1:
            raise PromptTooLong
        past = past[1:]


def tools_for_model(run: Run) -> list[dict[str, Any]]:
    """Function tools as the model sees them (built-ins like code_interpreter have no model-side form)."""
    out = []
    for tool in run.tools:
        if tool.type == "function":
            fn = tool.function.model_dump(exclude_none=True)
            fn.setdefault("parameters", {"type": "object", "properties": {}})
            out.append({"type": "function", "function": fn})
    return out
