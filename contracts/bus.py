"""Messages carried on the bus: registry requests and replies, run requests, run and task events.

Every reply carries either a result or a `BusError`, never a bare exception: a caller in any
language can tell a missing manifest (404) from a broken one (400) without parsing prose.
"""

from __future__ import annotations

import time
from typing import Any, Generic, Literal, TypeVar

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
    "internal_error": 500,
}


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


class ManifestList(BaseModel):
    data: list[ManifestSummary]


class GetManifestRequest(BaseModel):
    name: str
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
    """What another system publishes on `ossa.tasks.<agent>` to start a run."""

    input: str | list[InputMessage] | dict[str, Any] = Field(
        description="Text, a message list, or (for a Task manifest) an object matching its input schema."
    )
    thread_id: str | None = None
    run_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class RunRequest(BaseModel):
    """A run for an executor to take from the work queue (`ossa.tasks.<agent>`).

    The relay writes the run record first, then publishes this; an executor that takes it loads
    the thread and the agent and carries the run to a terminal state. Overrides mirror OpenAI's
    run-create parameters; `None` means "as the agent says".
    """

    run_id: str
    thread_id: str
    agent: str = Field(description="Manifest name of the agent (or Task) to run.")
    model: str | None = None
    instructions: str | None = None
    additional_instructions: str | None = None
    additional_messages: list[InputMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    truncation_strategy: dict[str, Any] | None = None
    response_format: Any = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    requested_at: int = Field(default_factory=lambda: int(time.time()))


class RunEvent(BaseModel):
    """Published on `ossa.events.<thread_id>.<run_id>.<event>`; `data` is the OpenAI object."""

    event: str
    thread_id: str
    run_id: str
    data: Any = None
    seq: int = 0
    at: int = Field(default_factory=lambda: int(time.time()))


class RunEventError(BaseModel):
    code: str
    message: str


class ServiceUnavailable(BaseModel):
    """Body of `error` events from services whose work is not built yet."""

    service: str
    code: Literal["not_implemented"] = "not_implemented"
    message: str
