"""Responses (the Responses API's objects), as records that point at the run carrying them.

A response is a run on a thread, so the run machinery (work queue, executors, fencing, crash
recovery) carries it unchanged; the record holds what the Responses API adds: the request as the
client gave it (echoed in every answer), the input items, which of the run's steps are this
response's (a response that answers function calls continues the run of the one before), and the
project that owns it. Keys: `<response id>` in the `ossa_responses` bucket.
"""

from __future__ import annotations

from typing import Any

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from ossabus.contracts import subjects
from ossabus.store import kv as kvs


class ResponseRecord(BaseModel):
    id: str
    project: str
    created_at: int
    thread_id: str
    run_id: str
    model: str = Field(description="`model` as the client gave it: an agent's name or a provider model.")
    agent: str | None = Field(None, description="The agent it runs as; None for a provider model.")
    request: dict[str, Any] = Field(default_factory=dict, description="Create parameters echoed in the object.")
    input_items: list[dict[str, Any]] = Field(default_factory=list)
    client_tools: list[str] = Field(default_factory=list, description="Function tools the client runs itself.")
    list_items: list[dict[str, Any]] = Field(default_factory=list, description="mcp_list_tools output items.")
    mcp_labels: dict[str, str] = Field(default_factory=dict, description="Server-side tool name -> server_label.")
    steps_before: list[str] = Field(
        default_factory=list, description="Steps of the run that belong to earlier responses (a continuation)."
    )
    previous_response_id: str | None = None
    conversation: str | None = Field(None, description="The conversation (thread) id when one was named.")
    store: bool = True
    background: bool = False
    calls_before: list[str] = Field(
        default_factory=list, description="Calls of the run's open step that earlier responses show."
    )
    usage_before: dict[str, int] = Field(
        default_factory=dict, description="The run's usage when this response began (a continuation)."
    )
    events_after: int | None = Field(None, description="Last event of the run's stream before this response.")
    final: dict[str, Any] | None = Field(
        None, description="The object as it ended, kept once a later response continues the same run."
    )


class Responses:
    def __init__(self, bucket: KeyValue):
        self.kv = bucket

    @classmethod
    async def open(cls, js: JetStreamContext) -> Responses:
        return cls(await kvs.leader_reads(js, await js.key_value(subjects.RESPONSES_BUCKET)))

    async def create(self, record: ResponseRecord) -> ResponseRecord:
        await kvs.create(self.kv, subjects.token(record.id), record)
        return record

    async def get(self, response_id: str) -> ResponseRecord | None:
        found = await kvs.read(self.kv, subjects.token(response_id), ResponseRecord)
        return found[0] if found else None

    async def update(self, response_id: str, change) -> ResponseRecord | None:
        return await kvs.update(self.kv, subjects.token(response_id), ResponseRecord, change)

    async def delete(self, response_id: str) -> None:
        await kvs.delete(self.kv, subjects.token(response_id))
