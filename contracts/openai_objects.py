"""OpenAI API objects ossabus returns, modelled on OpenAI's published OpenAPI description.

Fields keep OpenAI's names and nullability so the unmodified `openai` SDK parses what we send.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializationInfo, field_serializer, model_serializer

# Serialisation context under which stored objects keep what clients never see (their project).
STORE = {"store": True}


class FunctionObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    function: FunctionObject


class CodeInterpreterTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["code_interpreter"] = "code_interpreter"
    container: dict[str, Any] | None = None  # Responses' {type, file_ids}


class FileSearchTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["file_search"] = "file_search"
    file_search: dict[str, Any] | None = None


AssistantTool = FunctionTool | CodeInterpreterTool | FileSearchTool


class Assistant(BaseModel):
    """OpenAI's `AssistantObject`; in ossabus an assistant is a view of an OSSA Agent manifest."""

    id: str
    object: Literal["assistant"] = "assistant"
    created_at: int
    name: str | None
    description: str | None
    model: str
    instructions: str | None
    tools: list[AssistantTool] = Field(default_factory=list)
    tool_resources: dict[str, Any] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    temperature: float | None = None
    top_p: float | None = None
    response_format: Any = None

    @field_serializer("tools")
    def _tools_without_nulls(self, tools: list[AssistantTool]) -> list[dict[str, Any]]:
        """OpenAI's schema has no nulls inside tools (`description`, `file_search` are absent, not null)."""
        return [tool.model_dump(mode="json", exclude_none=True) for tool in tools]


class ErrorObject(BaseModel):
    """OpenAI's error object: `{"error": {"message", "type", "param", "code"}}`."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorObject


# --- threads, messages, runs, steps (Assistants v2) ------------------------------------------------


class TextContent(BaseModel):
    value: str
    annotations: list[Any] = Field(default_factory=list)


class MessageContentText(BaseModel):
    type: Literal["text"] = "text"
    text: TextContent


class MessageContentImageFile(BaseModel):
    """A figure the code interpreter made, stored as a File (`purpose: assistants_output`)."""

    type: Literal["image_file"] = "image_file"
    image_file: dict[str, Any]  # {file_id, detail?}


MessageContent = Annotated[MessageContentText | MessageContentImageFile, Field(discriminator="type")]


class IncompleteDetails(BaseModel):
    reason: str


def hide_unless_stored(data: dict[str, Any], info: SerializationInfo, *hidden: str) -> dict[str, Any]:
    """Fields kept in the store that no API answer carries (`model_dump(context=STORE)` keeps them)."""
    if not (info.context or {}).get("store"):
        for name in hidden:
            data.pop(name, None)
    return data


class Thread(BaseModel):
    """A thread (and, through it, its messages, runs and steps) belongs to the project of the key that
    made it; `project` is stored (`model_dump(context=STORE)`) but is in no API answer."""

    id: str
    object: Literal["thread"] = "thread"
    created_at: int
    tool_resources: dict[str, Any] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    project: str | None = None

    @model_serializer(mode="wrap")
    def _without_project(self, handler, info: SerializationInfo) -> dict[str, Any]:
        return hide_unless_stored(handler(self), info, "project")


class Message(BaseModel):
    id: str
    object: Literal["thread.message"] = "thread.message"
    created_at: int
    thread_id: str
    status: Literal["in_progress", "incomplete", "completed"] = "completed"
    incomplete_details: IncompleteDetails | None = None
    completed_at: int | None = None
    incomplete_at: int | None = None
    role: Literal["user", "assistant"]
    content: list[MessageContent] = Field(default_factory=list)
    assistant_id: str | None = None
    run_id: str | None = None
    attachments: list[dict[str, Any]] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    # Stored only: chat messages this entry stands for in the model's history, when it is more than
    # text (a Responses client's function calls and their outputs, its image parts).
    chat: list[dict[str, Any]] | None = None

    @model_serializer(mode="wrap")
    def _without_chat(self, handler, info: SerializationInfo) -> dict[str, Any]:
        return hide_unless_stored(handler(self), info, "chat")

    @property
    def text(self) -> str:
        return "".join(part.text.value for part in self.content if isinstance(part, MessageContentText))


class FunctionCall(BaseModel):
    name: str
    arguments: str
    output: str | None = None


class ToolApproval(BaseModel):
    """ossabus extension: a person's decision on a call the agent may not make unasked."""

    status: Literal["pending", "approved", "denied"] = "pending"
    reason: str | None = None
    decided_at: int | None = None


def _absent(value: object) -> bool:
    return value is None


class ToolCall(BaseModel):
    """A tool call as runs show it (`required_action` and `tool_calls` steps).

    A `file_search` call is shown in OpenAI's form (`file_search: {ranking_options, results}`); its
    `function` (the model's `{"query"}` and the passages it was given) is kept in the store only, so
    the run's later turns show the model what it saw."""

    id: str
    type: Literal["function", "file_search", "code_interpreter"] = "function"
    function: FunctionCall
    file_search: dict[str, Any] | None = Field(None, exclude_if=_absent)
    code_interpreter: dict[str, Any] | None = Field(None, exclude_if=_absent)  # {input, outputs}
    approval: ToolApproval | None = Field(
        None, exclude_if=_absent, description="ossabus extension, only on calls that need approval."
    )
    client: bool = False  # stored only: the client ran it (its output came through the API)

    @model_serializer(mode="wrap")
    def _without_client(self, handler, info: SerializationInfo) -> dict[str, Any]:
        data = hide_unless_stored(handler(self), info, "client")
        if self.type == "file_search" and not (info.context or {}).get("store"):
            data.pop("function", None)
            data.setdefault("file_search", {})
        if self.type == "code_interpreter" and not (info.context or {}).get("store"):
            data.pop("function", None)
            shown = dict(data.get("code_interpreter") or {})
            shown.pop("files", None)  # stored only: the Files the call wrote, for the message's content
            data["code_interpreter"] = {"input": shown.get("input", ""), "outputs": shown.get("outputs", [])}
        return data


class RequiredActionFunctionCall(BaseModel):
    name: str
    arguments: str


class RequiredActionToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: RequiredActionFunctionCall


class SubmitToolOutputs(BaseModel):
    tool_calls: list[RequiredActionToolCall]


class SubmitToolApprovals(BaseModel):
    tool_calls: list[RequiredActionToolCall]


class RequiredAction(BaseModel):
    """What the run waits for: tool outputs from the client (OpenAI's only kind), or, an ossabus
    extension, a person's approval of calls the agent's policy does not let it make unasked."""

    type: Literal["submit_tool_outputs", "submit_tool_approvals"] = "submit_tool_outputs"
    submit_tool_outputs: SubmitToolOutputs | None = Field(None, exclude_if=_absent)
    submit_tool_approvals: SubmitToolApprovals | None = Field(None, exclude_if=_absent)


class LastError(BaseModel):
    code: str
    message: str


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


RunStatus = Literal[
    "queued",
    "in_progress",
    "requires_action",
    "cancelling",
    "cancelled",
    "failed",
    "completed",
    "incomplete",
    "expired",
]
TERMINAL_RUN_STATUSES = ("cancelled", "failed", "completed", "incomplete", "expired")


class Run(BaseModel):
    id: str
    object: Literal["thread.run"] = "thread.run"
    created_at: int
    thread_id: str
    assistant_id: str
    status: RunStatus = "queued"
    required_action: RequiredAction | None = None
    last_error: LastError | None = None
    expires_at: int | None = None
    started_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    incomplete_details: IncompleteDetails | None = None
    model: str
    instructions: str
    tools: list[AssistantTool] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    usage: Usage | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    truncation_strategy: dict[str, Any] | None = Field(default_factory=lambda: {"type": "auto", "last_messages": None})
    response_format: Any = "auto"
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    # Stored only: provider parameters the Responses API passes through (reasoning effort, service
    # tier, ...) and the model a run on no agent calls.
    provider_params: dict[str, Any] = Field(default_factory=dict)
    direct_model: str | None = None
    response_id: str | None = None  # the Responses API response now carried by this run
    request_tools: list[dict[str, Any]] = Field(default_factory=list)  # server-side tools the request added
    max_tool_calls: int | None = None  # server-side calls this run may make (Responses `max_tool_calls`)
    # The vector stores a Responses `file_search` tool names (Assistants runs find theirs in the
    # assistant's and the thread's `tool_resources`).
    file_search_scope: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _without_hidden(self, handler, info: SerializationInfo) -> dict[str, Any]:
        hidden = (
            "provider_params",
            "direct_model",
            "response_id",
            "request_tools",
            "max_tool_calls",
            "file_search_scope",
        )
        return hide_unless_stored(handler(self), info, *hidden)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES

    @field_serializer("tools")
    def _tools_without_nulls(self, tools: list[AssistantTool]) -> list[dict[str, Any]]:
        return [tool.model_dump(mode="json", exclude_none=True) for tool in tools]


class MessageCreationDetails(BaseModel):
    type: Literal["message_creation"] = "message_creation"
    message_creation: dict[str, str]


class ToolCallsDetails(BaseModel):
    type: Literal["tool_calls"] = "tool_calls"
    tool_calls: list[ToolCall]


class RunStep(BaseModel):
    id: str
    object: Literal["thread.run.step"] = "thread.run.step"
    created_at: int
    assistant_id: str
    thread_id: str
    run_id: str
    type: Literal["message_creation", "tool_calls"]
    status: Literal["in_progress", "cancelled", "failed", "completed", "expired"] = "in_progress"
    step_details: MessageCreationDetails | ToolCallsDetails
    last_error: LastError | None = None
    expired_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    usage: Usage | None = None
    # Stored only: what the model reasoned before this step's turn (providers that stream
    # `reasoning_content`), shown by the Responses API as a reasoning item with this id.
    reasoning: str | None = None
    reasoning_id: str | None = None

    @model_serializer(mode="wrap")
    def _without_reasoning(self, handler, info: SerializationInfo) -> dict[str, Any]:
        return hide_unless_stored(handler(self), info, "reasoning", "reasoning_id")


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
