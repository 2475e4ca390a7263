"""What `useChat` sends, in both generations of the AI SDK, read into one shape.

AI SDK 5 and later: `{id, messages: UIMessage[], trigger, messageId}`, a UIMessage being
`{id, role, parts: [{type: "text", text}, {type: "tool-<name>", toolCallId, state, input, output,
approval}, ...]}`. AI SDK 4: `{id, messages: [{id, role, content, parts?, toolInvocations?}]}`, a
tool invocation being `{toolCallId, toolName, args, state, result}`. Apps add their own fields to the
body (`agent` here); anything else is ignored, as the SDK's own servers do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ossabus.relay.errors import ApiError


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = Field(None, max_length=200, description="The chat id: one chat, one thread.")
    messages: list[dict[str, Any]] = Field(min_length=1)
    trigger: Literal["submit-message", "regenerate-message"] | None = None
    messageId: str | None = None
    agent: str | None = None
    model: str | None = None


class CompletionBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1)
    agent: str | None = None
    model: str | None = None


class GenerateObjectBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    agent: str | None = None
    model: str | None = None
    agent_id: str | None = None


@dataclass
class IncomingMessage:
    """One chat message as ossabus needs it."""

    ui_id: str | None
    role: str
    text: str
    tool_outputs: dict[str, str] = field(default_factory=dict)  # call id -> output, as the model reads it
    approvals: dict[str, tuple[bool, str | None]] = field(default_factory=dict)  # call id -> (approved, reason)


def generation(body: ChatBody) -> Literal[4, 5]:
    """4 for AI SDK 4 bodies (messages with `content` and no `trigger`), else 5 (5, 6, 7 share it)."""
    if body.trigger is None and any("content" in m for m in body.messages):
        return 4
    return 5


def _as_output(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def read_message(raw: dict[str, Any], index: int) -> IncomingMessage:
    role = raw.get("role")
    if role not in ("user", "assistant", "system"):
        raise ApiError(
            400, f"messages[{index}].role must be user, assistant or system", param=f"messages[{index}].role"
        )
    message = IncomingMessage(ui_id=raw.get("id") if isinstance(raw.get("id"), str) else None, role=role, text="")
    texts: list[str] = []
    parts = raw.get("parts")
    if isinstance(parts, list):
        for part in parts:
            if isinstance(part, dict):
                _read_part(part, message, texts)
    if not texts and isinstance(raw.get("content"), str):
        texts.append(raw["content"])
    for invocation in raw.get("toolInvocations") or []:
        if isinstance(invocation, dict):
            _read_v4_invocation(invocation, message)
    message.text = "".join(texts)
    return message


def _read_part(part: dict[str, Any], message: IncomingMessage, texts: list[str]) -> None:
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("text"), str):
        texts.append(part["text"])
    elif kind == "tool-invocation" and isinstance(part.get("toolInvocation"), dict):
        _read_v4_invocation(part["toolInvocation"], message)
    elif isinstance(kind, str) and (kind.startswith("tool-") or kind == "dynamic-tool"):
        call_id, state = part.get("toolCallId"), part.get("state")
        if not isinstance(call_id, str):
            return
        if state == "output-available":
            message.tool_outputs[call_id] = _as_output(part.get("output"))
        elif state == "output-error":
            error = {"error": {"code": "client_tool_failed", "message": str(part.get("errorText") or "failed")}}
            message.tool_outputs[call_id] = json.dumps(error)
        elif state in ("approval-responded", "output-denied") and isinstance(part.get("approval"), dict):
            approval = part["approval"]
            if isinstance(approval.get("approved"), bool):
                reason = approval.get("reason") if isinstance(approval.get("reason"), str) else None
                message.approvals[call_id] = (approval["approved"], reason)


def _read_v4_invocation(invocation: dict[str, Any], message: IncomingMessage) -> None:
    if invocation.get("state") == "result" and isinstance(invocation.get("toolCallId"), str):
        message.tool_outputs[invocation["toolCallId"]] = _as_output(invocation.get("result"))
