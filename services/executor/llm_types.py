"""What a model call takes and gives, whichever way it goes (litellm or the OpenAI wire directly)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LLMRequest:
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    audit: Any = None  # the agent's `security.audit`: it can keep prompts and answers off its spans
    client: str | None = None  # the manifest's `extensions.ossabus.llm_client` (`litellm` forces it)


@dataclass
class ToolCallDelta:
    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass
class Chunk:
    text: str | None = None
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    model: str | None = None
    logprobs: dict[str, Any] | None = None  # the choice's logprobs, when the request asked for them
    reasoning: str | None = None  # `reasoning_content`, from providers that stream what the model thinks


@dataclass
class Completion:
    """A whole (non-streamed) answer; `tool_calls` in OpenAI's message shape."""

    text: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    model: str | None = None
    logprobs: dict[str, Any] | None = None
    reasoning: str | None = None

    @property
    def answered(self) -> bool:
        return bool(self.text or self.tool_calls)


class LLMError(Exception):
    """A model call that failed; `code` is what OpenAI would put in `last_error.code`; `timed_out`
    when the provider did not answer at all (a 504 at the edge rather than a 502)."""

    def __init__(self, code: str, message: str, transient: bool, status: int | None = None, *, timed_out: bool = False):
        super().__init__(message)
        self.code, self.message, self.transient, self.status = code, message, transient, status
        self.timed_out = timed_out
