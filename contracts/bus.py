"""Messages carried on the bus: registry requests and replies, run requests, run and task events.

Every reply carries either a result or a `BusError`, never a bare exception: a caller in any
language can tell a missing manifest (404) from a broken one (400) without parsing prose.
"""

from __future__ import annotations

import time
from typing import Any, Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ossabus.contracts.agent import AgentDefinition
from ossabus.contracts.diagnostics import Diagnostic, ValidationReport

ErrorCode = Literal[
    "invalid_manifest",
    "invalid_request",
    "not_found",
    "conflict",
    "too_large",
    "not_implemented",
    "unavailable",
    "rate_limit_exceeded",
    "upstream_error",
    "upstream_timeout",
    "internal_error",
]

# HTTP status each bus error maps to at the edge.
ERROR_STATUS: dict[str, int] = {
    "invalid_manifest": 400,
    "invalid_request": 400,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "not_implemented": 501,
    "unavailable": 503,
    "rate_limit_exceeded": 429,
    "upstream_error": 502,
    "upstream_timeout": 504,
    "internal_error": 500,
}


# Objects made without an API key (loopback, or over NATS) belong to this project.
DEFAULT_PROJECT = "default"


class BusError(BaseModel):
    code: ErrorCode
    message: str
    param: str | None = Field(None, description="The offending field, as a JSON path or parameter name.")
    diagnostics: list[Diagnostic] = Field(default_factory=list)

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.code]


T = TypeVar("T")


class Reply(BaseModel, Generic[T]):
    """Envelope of every request/reply answer."""

    ok: bool
    result: T | None = None
    error: BusError | None = None

    @classmethod
    def success(cls, result: T) -> Reply[T]:
        return cls(ok=True, result=result)

    @classmethod
    def failure(cls, error: BusError) -> Reply[T]:
        return cls(ok=False, error=error)


class AnyRequest(BaseModel):
    """A request whose body the handler does not read (status queries, unbuilt operations)."""

    model_config = ConfigDict(extra="allow")


# --- registry ------------------------------------------------------------------------------------

ManifestFormat = Literal["yaml", "json", "auto"]


class ManifestSummary(BaseModel):
    """What a listing shows of one stored manifest."""

    name: str
    kind: str
    api_version: str
    version: int = Field(description="Registry version: 1 for the first write of this name, +1 per write.")
    metadata_version: str | None = None
    description: str | None = None
    source: str | None = Field(None, description="File it was loaded from, or `api`.")
    created_at: int = Field(description="Unix seconds of the first version.")
    updated_at: int = Field(description="Unix seconds of this version.")


class ManifestRecord(ManifestSummary):
    """One stored version of one manifest: its text, its parsed form and its normalised definition."""

    format: Literal["yaml", "json"]
    raw: str
    manifest: dict[str, Any]
    definition: AgentDefinition
    warnings: list[Diagnostic] = Field(default_factory=list)

    def summary(self) -> ManifestSummary:
        return ManifestSummary.model_validate(self.model_dump(include=set(ManifestSummary.model_fields)))


class ListManifestsRequest(BaseModel):
    kind: str | None = None
    with_definitions: bool = Field(False, description="Include each manifest's normalised definition.")


class ManifestListItem(ManifestSummary):
    definition: AgentDefinition | None = None


class ManifestList(BaseModel):
    data: list[ManifestListItem]


class GetManifestRequest(BaseModel):
    """By manifest name, or by the OpenAI assistant id the manifest is served as."""

    name: str | None = None
    assistant_id: str | None = None
    version: int | None = Field(None, ge=1)


class PutManifestRequest(BaseModel):
    content: str = Field(description="Manifest text, YAML or JSON.")
    format: ManifestFormat = "auto"
    name: str | None = Field(None, description="When set, the manifest's metadata.name must equal it.")
    mode: Literal["create", "upsert"] = Field("upsert", description="`create` fails with conflict if it exists.")
    strict: bool = False
    source: str = "api"


class PutManifestResult(BaseModel):
    record: ManifestRecord
    created: bool
    changed: bool = Field(description="False when the content equals the latest version (no new version).")


class DeleteManifestRequest(BaseModel):
    name: str


class DeleteManifestResult(BaseModel):
    name: str
    deleted: bool


class ValidateManifestRequest(BaseModel):
    content: str
    format: ManifestFormat = "auto"
    strict: bool = False
    source: str | None = None


class ValidateManifestResult(BaseModel):
    valid: bool
    reports: list[ValidationReport]
    definitions: list[AgentDefinition] = Field(default_factory=list)


class RegistryStatus(BaseModel):
    loaded: bool
    manifests: int
    load_errors: list[Diagnostic] = Field(default_factory=list)


class ManifestChanged(BaseModel):
    """Published on `ossa.registry.changed.<name>` after every write."""

    name: str
    action: Literal["put", "delete"]
    version: int | None = None
    kind: str | None = None
    at: int = Field(default_factory=lambda: int(time.time()))


# --- runs ----------------------------------------------------------------------------------------


class InputMessage(BaseModel):
    role: Literal["user", "assistant", "system", "developer"] = "user"
    content: str | list[dict[str, Any]]


class TaskMessage(BaseModel):
    """What another system publishes on `ossa.tasks.<agent>` (durable) or sends to `ossa.ask.<agent>`
    (request/reply) to run an agent.

    Publish with a `Nats-Msg-Id` header to make it idempotent: the same id never starts two runs
    (the run and thread ids are derived from it unless given). Choose `run_id` (and `thread_id`)
    yourself to subscribe to `ossa.events.<thread_id>.<run_id>.>` before publishing.
    """

    model_config = ConfigDict(extra="forbid")

    input: str | list[InputMessage] | dict[str, Any] = Field(
        description="Text, a message list, or (for a Task manifest) an object matching its input schema."
    )
    thread_id: str | None = Field(None, description="Continue this conversation (created if it does not exist).")
    run_id: str | None = None
    additional_instructions: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class TaskResult(BaseModel):
    """The final word on a task: published as `task.result` on the run's subject, and the reply of `ossa.ask`."""

    agent: str
    thread_id: str
    run_id: str
    status: str = Field(
        description="The run's status: completed, incomplete, failed, expired, cancelled, requires_action."
    )
    output_text: str | None = Field(None, description="The assistant's final message.")
    output: Any = Field(None, description="For a Task manifest with an output schema: the validated object.")
    usage: dict[str, int] | None = None
    last_error: dict[str, str] | None = None
    incomplete_details: dict[str, str] | None = None
    required_action: dict[str, Any] | None = None


class RunRequest(BaseModel):
    """A run for an executor to take from the work queue (`ossa.tasks.<agent>`).

    The relay writes the run record first (with every OpenAI run-create parameter applied), then
    publishes this; an executor that takes it loads the run, its thread and its agent, and carries
    the run as far as it can. The message is a pointer: the run record is the truth.
    """

    run_id: str
    thread_id: str
    agent: str = Field(description="Manifest name of the agent (or Task) to run.")
    agent_version: int | None = Field(None, description="Registry version the relay saw; older caches refetch.")
    model: str | None = Field(None, description="Model override, as the client gave it.")
    attempt: int = Field(1, description="1 for the run's start, +1 for each resume (submit_tool_outputs).")
    principal: str = Field("anonymous", description="Who asked (API key fingerprint), for usage accounting.")
    project: str = Field("default", description="The project the run's thread belongs to, for usage accounting.")
    requested_at: int = Field(default_factory=lambda: int(time.time()))


# Chat Completions fields a client's request passes on to the model unchanged.
SAMPLING_PARAMS = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "response_format",
    "tool_choice",
    "parallel_tool_calls",
    "user",
)
# Chat Completions fields that reach a provider only if it takes them (the rest are ours or universal).
PROVIDER_SPECIFIC_PARAMS = (
    "logprobs",
    "top_logprobs",
    "prediction",
    "modalities",
    "audio",
    "verbosity",
    "web_search_options",
    "service_tier",
    "reasoning_effort",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
)


class TokenCountRequest(BaseModel):
    """How many input tokens a model request would cost (`ossa.executor.tokens`): the executor holds
    the tokenizers (litellm's), so the edge asks rather than loading them."""

    model: str = Field(description="litellm model string, or an agent's name in `agent`.")
    agent: str | None = None
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None


class TokenCount(BaseModel):
    input_tokens: int


class EmbeddingRequest(BaseModel):
    """Embeddings of `input` by a provider model (`ossa.executor.embeddings`)."""

    id: str
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    dimensions: int | None = None
    user: str | None = None
    principal: str = "anonymous"
    project: str = "default"


class Embeddings(BaseModel):
    """The vectors, in input order, as floats (the edge encodes base64 when asked), and usage."""

    model: str
    vectors: list[list[float]]
    prompt_tokens: int = 0


class ChatRequest(BaseModel):
    """A chat completion for an executor (`ossa.chat.<agent>`, core request/reply)."""

    id: str
    created: int
    agent: str | None = Field(None, description="Agent whose prompt, tools and limits apply; None for a plain call.")
    agent_version: int | None = Field(None, description="Registry version the relay saw; older caches refetch.")
    model: str = Field(description="What the client asked for: an agent name or a provider/model string.")
    messages: list[dict[str, Any]]
    params: dict[str, Any] = Field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    stream_subject: str | None = Field(None, description="Where to publish chunks when streaming.")
    include_usage: bool = False
    principal: str = Field("anonymous", description="Who asked (API key fingerprint), for usage accounting.")
    project: str = Field("default", description="The caller's project, for usage accounting.")

    @classmethod
    def from_relay(cls, raw: bytes) -> ChatRequest:
        """A request as ossabus's own relay publishes it, read without validating every field again:
        only ossabus's services may publish on `ossa.chat.>` (see bus-permissions.md), and the
        relay built it from a client request it validated. One that lacks what every request
        has is still refused (ValueError)."""
        data = orjson.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise ValueError("a chat request needs its messages")
        missing = [name for name in ("id", "created", "model") if name not in data]
        if missing:
            raise ValueError(f"a chat request needs {', '.join(missing)}")
        return cls.model_construct(**data)

    def encoded(self) -> bytes:
        """The request as the executor reads it (`from_relay`), written with orjson: its fields
        are plain JSON values (a validated client request's), so no pydantic serializer is needed."""
        return orjson.dumps(self.__dict__)


class RunEvent(BaseModel):
    """Published on `ossa.events.<thread_id>.<run_id>.<event>`; `data` is the OpenAI object.

    Their order is the OSSA_EVENTS stream's sequence, which also serves as the SSE event id.
    """

    event: str
    thread_id: str
    run_id: str
    data: Any = None
    at: int = Field(default_factory=lambda: int(time.time()))


class ToolOutputAnswer(BaseModel):
    tool_call_id: str
    output: str = ""


class ToolApprovalAnswer(BaseModel):
    tool_call_id: str
    approve: bool
    reason: str | None = Field(None, max_length=2000)


class RunAnswer(BaseModel):
    """Sent to `ossa.runs.answer` (request/reply) by a system that started a run over the bus: what
    the parked run waits for (its `thread.run.requires_action` event says which). Replies the run."""

    thread_id: str
    run_id: str
    tool_outputs: list[ToolOutputAnswer] | None = None
    approvals: list[ToolApprovalAnswer] | None = None
