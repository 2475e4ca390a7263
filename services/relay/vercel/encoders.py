"""The three wire formats of the Vercel AI SDK, each built from UI message chunks.

- `ui`: UI message stream v1 (AI SDK 5 and later): SSE, one JSON chunk per `data:` line, then
  `data: [DONE]`; header `x-vercel-ai-ui-message-stream: v1`.
- `data`: data stream v1 (AI SDK 3 and 4): `<code>:<json>` lines (`0` text, `b`/`c` tool-call
  streaming, `9` tool call, `a` tool result, `f`/`e` step start/finish, `d` finish, `3` error);
  header `x-vercel-ai-data-stream: v1`.
- `text`: the text deltas alone, as plain text.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from ossabus.relay.vercel.ui_chunks import Chunk

Protocol = Literal["ui", "data", "text"]
PROTOCOL_NAMES: dict[str, Protocol] = {
    "ui": "ui",
    "ui-message": "ui",
    "ui-message-stream": "ui",
    "sse": "ui",
    "data": "data",
    "data-stream": "data",
    "text": "text",
}
MEDIA_TYPES: dict[Protocol, str] = {
    "ui": "text/event-stream",
    "data": "text/plain; charset=utf-8",
    "text": "text/plain; charset=utf-8",
}
HEADERS: dict[Protocol, dict[str, str]] = {
    "ui": {"x-vercel-ai-ui-message-stream": "v1", "cache-control": "no-cache", "x-accel-buffering": "no"},
    "data": {"x-vercel-ai-data-stream": "v1", "cache-control": "no-cache", "x-accel-buffering": "no"},
    "text": {"cache-control": "no-cache", "x-accel-buffering": "no"},
}
DONE = b"data: [DONE]\n\n"
KEEP_ALIVE: dict[Protocol, bytes] = {"ui": b": keep-alive\n\n", "data": b"", "text": b""}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def ui(chunk: Chunk) -> bytes:
    return f"data: {_compact(chunk)}\n\n".encode()


class DataStream:
    """Data stream v1 lines from UI chunks; remembers tool names and usage, which its parts repeat."""

    def __init__(self) -> None:
        self.tool_names: dict[str, str] = {}
        self.usage = {"promptTokens": 0, "completionTokens": 0}
        self.step_called_tools = False

    def set_usage(self, usage: dict[str, int] | None) -> None:
        if usage:
            self.usage = {
                "promptTokens": int(usage.get("prompt_tokens", 0)),
                "completionTokens": int(usage.get("completion_tokens", 0)),
            }

    def encode(self, chunk: Chunk) -> bytes:
        kind = chunk["type"]
        if kind == "text-delta":
            return self._line("0", chunk["delta"])
        if kind == "tool-input-start":
            self.step_called_tools = True
            self.tool_names[chunk["toolCallId"]] = chunk["toolName"]
            return self._line("b", {"toolCallId": chunk["toolCallId"], "toolName": chunk["toolName"]})
        if kind == "tool-input-delta":
            return self._line("c", {"toolCallId": chunk["toolCallId"], "argsTextDelta": chunk["inputTextDelta"]})
        if kind == "tool-input-available":
            self.tool_names[chunk["toolCallId"]] = chunk["toolName"]
            args = chunk["input"] if isinstance(chunk["input"], dict) else {"input": chunk["input"]}
            return self._line("9", {"toolCallId": chunk["toolCallId"], "toolName": chunk["toolName"], "args": args})
        if kind == "tool-output-available":
            if chunk.get("preliminary"):
                return b""  # AI SDK 4 has one result per call: the final one
            return self._line("a", {"toolCallId": chunk["toolCallId"], "result": chunk["output"]})
        if kind == "tool-output-error":
            return self._line("a", {"toolCallId": chunk["toolCallId"], "result": {"error": chunk["errorText"]}})
        if kind == "tool-output-denied":
            return self._line("a", {"toolCallId": chunk["toolCallId"], "result": {"error": "denied"}})
        if kind == "start":
            return self._line("f", {"messageId": chunk.get("messageId", "")})
        if kind == "finish-step":
            reason = "tool-calls" if self.step_called_tools else "stop"
            self.step_called_tools = False
            return self._line("e", {"finishReason": reason, "usage": self.usage, "isContinued": False})
        if kind == "finish":
            return self._line("d", {"finishReason": chunk.get("finishReason", "stop"), "usage": self.usage})
        if kind == "error":
            return self._line("3", chunk["errorText"])
        return b""  # no data-stream form (text-start/end, start-step, approval requests)

    @staticmethod
    def _line(code: str, value: Any) -> bytes:
        return f"{code}:{_compact(value)}\n".encode()


def text(chunk: Chunk) -> bytes:
    return chunk["delta"].encode() if chunk["type"] == "text-delta" else b""
