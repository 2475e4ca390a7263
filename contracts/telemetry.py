"""What the telemetry service reads and answers: usage of each model call, tool call reports,
usage queries, and the Prometheus exposition."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class UsageRecord(BaseModel):
    """One model call's usage, published by the executor on `ossa.usage.<agent>` (OSSA_USAGE stream)."""

    id: str = Field(description="Unique per model call; also the message's Nats-Msg-Id.")
    agent: str | None = Field(None, description="None for a plain provider model through /v1/chat/completions.")
    model: str
    principal: str = Field("anonymous", description="Who asked: `key_<hash>` of the API key, `nats`, or anonymous.")
    project: str = Field("default", description="The project of the caller (or of the run's thread).")
    kind: Literal["run", "chat", "embeddings"]
    run_id: str | None = None
    thread_id: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    at: float = Field(description="Unix time of the call's end.")


class ToolReport(BaseModel):
    """The dispatcher's account of one tool call, on `ossa.telemetry.tools`."""

    tool: str
    agent: str | None = None
    kind: str = "function"
    ok: bool
    code: str | None = None
    duration_ms: float


class UsageCounters(BaseModel):
    """Counters of one KV usage key; `last_seq` is the last OSSA_USAGE message added (for exactly-once)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    last_seq: int = 0


NAME = r"^[A-Za-z0-9_\-]+$"  # one subject token: names end up in KV keys


class UsageQuery(BaseModel):
    agent: str | None = Field(None, pattern=NAME)
    project: str | None = Field(None, pattern=NAME, description="Only this project's usage (the relay always sets it).")
    principal: str | None = Field(None, pattern=NAME)
    from_day: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="First UTC day, inclusive.")
    to_day: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="Last UTC day, inclusive.")


class UsageRow(BaseModel):
    day: str
    agent: str
    project: str | None = Field(None, description="None on the row of the agent's day across all projects.")
    principal: str | None = Field(None, description="None on the rows of a day in total (agent or project).")
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float


class UsageReport(BaseModel):
    object: Literal["list"] = "list"
    data: list[UsageRow]
    total: UsageCounters


class MetricsText(BaseModel):
    text: str
