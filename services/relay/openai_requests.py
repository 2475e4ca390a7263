"""Request bodies of the OpenAI endpoints, validated like OpenAI validates them.

Unknown fields are refused (OpenAI answers "Unrecognized request argument supplied"), limits are
OpenAI's (16 metadata pairs, `max_*_tokens` >= 256, temperature 0-2, ...), so a client that works
here works there and the other way round.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_METADATA_PAIRS = 16


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResponseFormatObject(BaseModel):
    """`{"type": "text" | "json_object" | "json_schema", "json_schema": {...}}`, as OpenAI takes it."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


def _plain(value: Any) -> Any:
    return value.model_dump(exclude_none=True) if isinstance(value, BaseModel) else value


# Checked here, not first at the provider (seen in fuzzing: `[]` was accepted and the run failed later).
ResponseFormat = Annotated[Literal["auto"] | ResponseFormatObject | None, AfterValidator(_plain)]


def check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > MAX_METADATA_PAIRS:
        raise ValueError(f"at most {MAX_METADATA_PAIRS} metadata pairs")
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError(f"metadata key {key[:20]!r}... is longer than 64 characters")
        if len(item) > 512:
            raise ValueError(f"metadata value of {key!r} is longer than 512 characters")
    return value


Metadata = Annotated[dict[str, str] | None, Field(None)]
Temperature = Annotated[float | None, Field(None, ge=0, le=2)]
TopP = Annotated[float | None, Field(None, ge=0, le=1)]


class FunctionDef(Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionToolIn(Strict):
    type: Literal["function"]
    function: FunctionDef


class BuiltinToolIn(Strict):
    type: Literal["code_interpreter", "file_search"]
    file_search: dict[str, Any] | None = None


ToolIn = Annotated[FunctionToolIn | BuiltinToolIn, Field(discriminator="type")]


class CustomToolDef(Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    format: dict[str, Any] | None = None


class CustomToolIn(Strict):
    """A custom tool (free-form text input): offered to the model as a function with one string
    argument, and its calls given back in the custom shape (see relay/chat_compat.py)."""

    type: Literal["custom"]
    custom: CustomToolDef


class AssistantCreate(Strict):
    model: str = Field(min_length=1)
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=512)
    instructions: str | None = Field(None, max_length=256_000)
    tools: list[ToolIn] = Field(default_factory=list, max_length=128)
    tool_resources: dict[str, Any] | None = None
    metadata: Metadata
    temperature: Temperature
    top_p: TopP
    response_format: ResponseFormat = None
    reasoning_effort: str | None = None

    _metadata = field_validator("metadata")(check_metadata)


class AssistantUpdate(Strict):
    model: str | None = Field(None, min_length=1)
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=512)
    instructions: str | None = Field(None, max_length=256_000)
    tools: list[ToolIn] | None = Field(None, max_length=128)
    tool_resources: dict[str, Any] | None = None
    metadata: Metadata
    temperature: Temperature
    top_p: TopP
    response_format: ResponseFormat = None
    reasoning_effort: str | None = None

    _metadata = field_validator("metadata")(check_metadata)


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ImageUrlPart(Strict):
    type: Literal["image_url"]
    image_url: dict[str, Any]


class ImageFilePart(Strict):
    type: Literal["image_file"]
    image_file: dict[str, Any]


ContentPart = Annotated[TextPart | ImageUrlPart | ImageFilePart, Field(discriminator="type")]


class MessageCreate(Strict):
    role: Literal["user", "assistant"]
    content: str | list[ContentPart]
    attachments: list[dict[str, Any]] | None = None
    metadata: Metadata

    _metadata = field_validator("metadata")(check_metadata)

    @field_validator("content")
    @classmethod
    def _not_empty(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("content must not be empty")
        return value

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class MessageUpdate(Strict):
    metadata: Metadata

    _metadata = field_validator("metadata")(check_metadata)


class ThreadCreate(Strict):
    messages: list[MessageCreate] = Field(default_factory=list, max_length=32)
    tool_resources: dict[str, Any] | None = None
    metadata: Metadata

    _metadata = field_validator("metadata")(check_metadata)


class ThreadUpdate(Strict):
    tool_resources: dict[str, Any] | None = None
    metadata: Metadata

    _metadata = field_validator("metadata")(check_metadata)


class Truncation(Strict):
    type: Literal["auto", "last_messages"]
    last_messages: int | None = Field(None, ge=1)


class RunOptions(Strict):
    """What run-create and create-thread-and-run share."""

    assistant_id: str
    model: str | None = None
    instructions: str | None = None
    tools: list[ToolIn] | None = Field(None, max_length=128)
    metadata: Metadata
    temperature: Temperature
    top_p: TopP
    stream: bool | None = None
    max_prompt_tokens: int | None = Field(None, ge=256)
    max_completion_tokens: int | None = Field(None, ge=256)
    truncation_strategy: Truncation | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat = None
    reasoning_effort: str | None = None

    _metadata = field_validator("metadata")(check_metadata)

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, value):
        if value is None or value in ("none", "auto", "required"):
            return value
        if isinstance(value, dict) and value.get("type") in ("function", "code_interpreter", "file_search"):
            return value
        raise ValueError("tool_choice must be none, auto, required or a tool object")


class RunCreate(RunOptions):
    additional_instructions: str | None = None
    additional_messages: list[MessageCreate] | None = Field(None, max_length=32)


class ThreadAndRunCreate(RunOptions):
    thread: ThreadCreate | None = None
    tool_resources: dict[str, Any] | None = None


class RunUpdate(Strict):
    metadata: Metadata

    _metadata = field_validator("metadata")(check_metadata)


class ToolOutput(Strict):
    tool_call_id: str
    output: str = ""


class SubmitToolOutputs(Strict):
    tool_outputs: list[ToolOutput] = Field(min_length=1)
    stream: bool | None = None


class ToolApprovalDecision(Strict):
    tool_call_id: str
    approve: bool
    reason: str | None = Field(None, max_length=2000, description="Told to the model when the call is denied.")


class SubmitToolApprovals(Strict):
    """ossabus extension, shaped like submit_tool_outputs: a decision for each call awaiting approval."""

    approvals: list[ToolApprovalDecision] = Field(min_length=1)
    stream: bool | None = None


class StreamOptions(Strict):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatMessage(BaseModel):
    """Chat messages are passed on as given (the parts are the provider's business), once they have
    what OpenAI requires of their role: a message without them used to reach litellm, fail there,
    and come back as a 502 (found by the schemathesis fuzz)."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _parts_have_a_type(cls, content: Any) -> Any:
        for i, part in enumerate(content if isinstance(content, list) else []):
            if not isinstance(part.get("type"), str):
                raise ValueError(f"content part {i} needs a 'type'")
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise ValueError(f"text part {i} needs 'text'")
        return content

    @model_validator(mode="after")
    def _has_what_its_role_needs(self) -> ChatMessage:
        if self.role in ("system", "developer", "user", "tool", "function") and self.content is None:
            raise ValueError(f"a {self.role} message needs 'content'")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs 'tool_call_id'")
        if self.role == "assistant" and self.content is None and not self.tool_calls:
            extra = self.model_extra or {}
            if not any(extra.get(k) for k in ("function_call", "refusal", "audio")):
                raise ValueError("an assistant message needs 'content' or 'tool_calls'")
        return self


class ChatCompletionCreate(Strict):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Temperature
    top_p: TopP
    n: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[FunctionToolIn | CustomToolIn] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    metadata: Metadata
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    prediction: dict[str, Any] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    web_search_options: dict[str, Any] | None = None
    functions: list[FunctionDef] | None = Field(None, max_length=128)
    function_call: Literal["auto", "none"] | dict[str, str] | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    moderation: Any = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, int] | None = None
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None

    _metadata = field_validator("metadata")(check_metadata)

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value):
        if value not in (None, 1):
            raise ValueError("ossabus returns one choice per request: n must be 1")
        return value
