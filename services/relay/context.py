"""What the OpenAI routes share: state, the registry as assistants, id checks, OpenAI-shaped 404s."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request

from ossabus.contracts import subjects
from ossabus.contracts.bus import (
    GetManifestRequest,
    ManifestListItem,
    ManifestRecord,
)
from ossabus.registry.convert_openai import assistant_id_for, to_assistant
from ossabus.relay.errors import ApiError
from ossabus.runtime.bus import BusClient, BusFailure
from ossabus.store.state import State

POLL_AFTER_MS = "200"


def now() -> int:
    return int(time.time())


def state(request: Request) -> State:
    return request.app.state.state


def bus(request: Request) -> BusClient:
    return request.app.state.bus


def not_found(what: str, value: str, param: str) -> ApiError:
    """OpenAI's 404 wording: `No thread found with id 'thread_x'.`"""
    return ApiError(404, f"No {what} found with id '{value}'.", param=param, code="not_found")


def checked_id(value: str, what: str, param: str) -> str:
    """Ids go into KV keys and subjects: anything that is not a plain token is simply not found."""
    try:
        subjects.token(value)
    except subjects.InvalidSubjectToken as exc:
        raise not_found(what, value, param) from exc
    return value


async def assistant_record(request: Request, assistant_id: str) -> ManifestRecord:
    try:
        record = await bus(request).call(
            subjects.REGISTRY_GET, GetManifestRequest(assistant_id=assistant_id), ManifestRecord
        )
    except BusFailure as exc:
        if exc.error.code == "not_found":
            raise ApiError(
                404, f"No assistant found with id '{assistant_id}'.", param="assistant_id", code="not_found"
            ) from exc
        raise
    if record.kind != "Agent":
        raise not_found("assistant", assistant_id, "assistant_id")
    return record


async def manifests(request: Request, kind: str | None = None) -> list[ManifestListItem]:
    items = await request.app.state.catalog.items()
    return [m for m in items if kind is None or m.kind == kind]


def assistant_json(record: ManifestRecord | ManifestListItem) -> dict[str, Any]:
    assert record.definition is not None
    return to_assistant(record.definition, created_at=record.created_at).model_dump(mode="json")


def assistant_id(item: ManifestListItem) -> str:
    definition = item.definition
    return (definition.openai_assistant_id if definition else None) or assistant_id_for(item.name)
