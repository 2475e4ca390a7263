"""A run's OpenAI events as the Vercel AI SDK's UI message stream chunks.

The UI message stream is the richest of the SDK's protocols, so it is the one built here; the data
stream (AI SDK 3/4) and the plain text stream are derived from its chunks (see `encoders`).

Mapping (seed 004, in OpenAI's terms): the run's first event opens the message (`start`, with the
run id as message id, so a run resumed after client tool outputs continues the same UI message);
each step opens and closes a step; message deltas are text; a tool call's name and argument deltas
are tool input; the dispatcher's outputs are tool outputs (`{"error": ...}` outputs are tool
errors); a run that waits for the client or a person ends the response with the calls it waits on
(and an approval request per call that needs one). Chunks carry only the fields their type
defines: older SDKs reject unknown fields, and newer ones reject `finishReason: "unknown"`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ossabus.runtime.events import DELEGATE_DELTA

Chunk = dict[str, Any]

FINISH_REASON = {
    "thread.run.completed": "stop",
    "thread.run.incomplete": "length",
    "thread.run.requires_action": "tool-calls",
    "thread.run.failed": "error",
    "thread.run.expired": "error",
    "thread.run.cancelled": "other",
    "error": "error",
}


def parse_input(arguments: str) -> Any:
    try:
        return json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        return arguments


def tool_error(output: str) -> tuple[str, str] | None:
    """(code, message) of a tool error result (`{"error": {"code", "message"}}`), else None."""
    if not output.startswith('{"error"'):
        return None
    try:
        error = json.loads(output).get("error")
    except (json.JSONDecodeError, AttributeError):
        return None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error.get("code", "error")), error["message"]
    return None


def tool_output(output: str) -> Any:
    try:
        return json.loads(output)
    except json.JSONDecodeError:
        return output


@dataclass
class ToolCallState:
    id: str
    name: str = ""
    arguments: str = ""
    started: bool = False
    input_sent: bool = False
    output_sent: bool = False
    preliminary: str = ""  # a delegate's answer so far


@dataclass
class UIChunks:
    """Turns one run's events, in order, into UI message chunks; one instance per response."""

    message_id: str
    started: bool = False
    open_texts: set[str] = field(default_factory=set)
    steps_open: int = 0
    calls: dict[tuple[str, int], ToolCallState] = field(default_factory=dict)
    usage: dict[str, int] | None = None
    last_event: str | None = None

    def feed(self, name: str, data: Any) -> list[Chunk]:
        out: list[Chunk] = []
        self.last_event = name
        if not self.started:
            self.started = True
            out.append({"type": "start", "messageId": self.message_id})
        if name == "thread.run.step.created":
            out.append({"type": "start-step"})
            self.steps_open += 1
        elif name == "thread.message.delta":
            out += self._text_delta(data)
        elif name in ("thread.message.completed", "thread.message.incomplete"):
            if data.get("id") in self.open_texts:
                self.open_texts.discard(data["id"])
                out.append({"type": "text-end", "id": data["id"]})
        elif name == "thread.run.step.delta":
            out += self._tool_deltas(data)
        elif name == DELEGATE_DELTA:
            out += self._delegate_progress(data)
        elif name == "thread.run.step.completed":
            out += self._step_completed(data)
        elif name == "thread.run.requires_action":
            out += self._requires_action(data)
        elif name in ("thread.run.failed", "thread.run.expired"):
            error = data.get("last_error") or {}
            reason = "the run expired" if name.endswith("expired") else "the run failed"
            out.append({"type": "error", "errorText": error.get("message") or reason})
        elif name == "error":
            out.append({"type": "error", "errorText": str(data.get("message") or data)})
        if isinstance(data, dict) and data.get("object") == "thread.run" and data.get("usage"):
            self.usage = data["usage"]
        return out

    def finish(self) -> list[Chunk]:
        """The closing chunks, after the event that ended the response."""
        out: list[Chunk] = []
        if not self.started:
            out.append({"type": "start", "messageId": self.message_id})
        for text_id in sorted(self.open_texts):
            out.append({"type": "text-end", "id": text_id})
        self.open_texts.clear()
        while self.steps_open > 0:
            out.append({"type": "finish-step"})
            self.steps_open -= 1
        out.append({"type": "finish", "finishReason": FINISH_REASON.get(self.last_event or "", "other")})
        return out

    # --- internals -------------------------------------------------------------------------------

    def _text_delta(self, data: dict) -> list[Chunk]:
        out: list[Chunk] = []
        text_id = data.get("id", "text")
        for part in (data.get("delta") or {}).get("content") or []:
            value = (part.get("text") or {}).get("value") if part.get("type") == "text" else None
            if not value:
                continue
            if text_id not in self.open_texts:
                self.open_texts.add(text_id)
                out.append({"type": "text-start", "id": text_id})
            out.append({"type": "text-delta", "id": text_id, "delta": value})
        return out

    def _call(self, step_id: str, index: int, call_id: str | None) -> ToolCallState:
        key = (step_id, index)
        if key not in self.calls:
            self.calls[key] = ToolCallState(id=call_id or f"{step_id}-{index}")
        elif call_id:
            self.calls[key].id = call_id
        return self.calls[key]

    def _tool_deltas(self, data: dict) -> list[Chunk]:
        out: list[Chunk] = []
        details = (data.get("delta") or {}).get("step_details") or {}
        for entry in details.get("tool_calls") or []:
            call = self._call(data.get("id", ""), int(entry.get("index", 0)), entry.get("id"))
            function = entry.get("function") or {}
            if function.get("name"):
                call.name = function["name"]
            if not call.started and call.name:
                call.started = True
                out.append({"type": "tool-input-start", "toolCallId": call.id, "toolName": call.name})
            if function.get("arguments"):
                call.arguments += function["arguments"]
                out.append({"type": "tool-input-delta", "toolCallId": call.id, "inputTextDelta": function["arguments"]})
            if function.get("output") is not None:
                if call.started:  # else the client has the call already (a run resumed after approval)
                    out += self._input_available(call)
                out += self._output(call, function["output"])
        return out

    def _input_available(self, call: ToolCallState) -> list[Chunk]:
        if call.input_sent:
            return []
        call.input_sent = True
        out: list[Chunk] = []
        out.append(
            {
                "type": "tool-input-available",
                "toolCallId": call.id,
                "toolName": call.name,
                "input": parse_input(call.arguments),
            }
        )
        return out

    def _output(self, call: ToolCallState, output: str) -> list[Chunk]:
        if call.output_sent:
            return []
        call.output_sent = True
        error = tool_error(output)
        if error is not None and error[0] == "denied":
            return [{"type": "tool-output-denied", "toolCallId": call.id}]
        if error is not None:
            return [{"type": "tool-output-error", "toolCallId": call.id, "errorText": f"{error[0]}: {error[1]}"}]
        return [{"type": "tool-output-available", "toolCallId": call.id, "output": tool_output(output)}]

    def _delegate_progress(self, data: dict) -> list[Chunk]:
        """A delegate's answer so far: a preliminary output of its call (AI SDK 5+)."""
        call = next((c for c in self.calls.values() if c.id == data.get("call_id")), None)
        if call is None or not call.started or call.output_sent:
            return []  # not a call this response showed (a run resumed after an approval), or answered
        call.preliminary += str(data.get("delta") or "")  # each preliminary output replaces the one before
        preliminary = {
            "type": "tool-output-available",
            "toolCallId": call.id,
            "output": call.preliminary,
            "preliminary": True,
        }
        return [*self._input_available(call), preliminary]

    def _known_calls(self, step: dict) -> list[tuple[ToolCallState, dict]]:
        """The step's calls as this stream knows them, filled in from the step object (a replay or a
        continuation may not have seen their deltas)."""
        out = []
        for index, entry in enumerate((step.get("step_details") or {}).get("tool_calls") or []):
            call = self._call(step.get("id", ""), index, entry.get("id"))
            function = entry.get("function") or {}
            call.name = call.name or function.get("name", "")
            if not call.input_sent and function.get("arguments") is not None:
                call.arguments = function["arguments"]
            out.append((call, function))
        return out

    def _step_completed(self, step: dict) -> list[Chunk]:
        out: list[Chunk] = []
        if step.get("type") == "tool_calls":
            for call, function in self._known_calls(step):
                if not call.started:
                    continue  # answered by the client, which has them: a run resumed after its outputs
                out += self._input_available(call)
                if function.get("output") is not None:
                    out += self._output(call, function["output"])
        if self.steps_open > 0:
            self.steps_open -= 1
            out.append({"type": "finish-step"})
        return out

    def _requires_action(self, run: dict) -> list[Chunk]:
        action = run.get("required_action") or {}
        kind = action.get("type")
        waiting = (action.get(kind) or {}).get("tool_calls") or [] if kind else []
        by_id = {c.id: c for c in self.calls.values()}
        out: list[Chunk] = []
        for entry in waiting:
            call = by_id.get(entry["id"]) or self._call("action", len(self.calls), entry["id"])
            call.name = call.name or entry["function"]["name"]
            if not call.input_sent:
                call.arguments = entry["function"]["arguments"]
            out += self._input_available(call)
            if kind == "submit_tool_approvals":
                out.append({"type": "tool-approval-request", "approvalId": call.id, "toolCallId": call.id})
        return out
