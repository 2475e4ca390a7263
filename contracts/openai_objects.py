"""OpenAI API objects ossabus returns, modelled on OpenAI's published OpenAPI description.

Fields keep OpenAI's names and nullability so the unmodified `openai` SDK parses what we send.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer


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
