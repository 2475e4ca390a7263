"""`/v1/assistants`: an assistant is an OSSA Agent manifest in the registry, seen through OpenAI's eyes.

Created through the API, it appears in `/v1/ossa/manifests`; manifests from files appear here.
"""

from __future__ import annotations

import secrets
import string
from typing import Literal

import yaml
from fastapi import APIRouter, Request

from ossabus.contracts import subjects
from ossabus.contracts.bus import DeleteManifestRequest, DeleteManifestResult, PutManifestRequest, PutManifestResult
from ossabus.registry.convert_openai import assistant_id_for, from_assistant, slug
from ossabus.registry.patch_openai import apply_assistant_update
from ossabus.relay.auth import require_admin
from ossabus.relay.context import assistant_json, assistant_record, bus, checked_id, manifests, now
from ossabus.relay.openai_requests import AssistantCreate, AssistantUpdate
from ossabus.relay.pagination import paginate
from ossabus.relay.thread_files import resolve_resources
from ossabus.runtime.bus import BusFailure

router = APIRouter(prefix="/v1/assistants", tags=["assistants"])
NAME_ATTEMPTS = 5


def _suffix() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(6))


@router.post("")
async def create_assistant(request: Request, body: AssistantCreate):
    require_admin(request, "create, change or delete assistants (they are agent manifests, shared by every project)")
    fields = body.model_dump(exclude_none=True, mode="json")
    fields.pop("reasoning_effort", None)
    if "tool_resources" in fields:
        fields["tool_resources"] = await resolve_resources(request, fields["tool_resources"])
    base = slug(body.name or "")[:50] or "assistant"
    for attempt in range(NAME_ATTEMPTS):
        name = base if attempt == 0 and body.name else f"{base}-{_suffix()}"
        assistant = {
            "id": assistant_id_for(name),
            "object": "assistant",
            "created_at": now(),
            "name": body.name,
            "description": None,
            "instructions": None,
            **fields,
        }
        manifest = from_assistant(assistant, name=name)
        put = PutManifestRequest(
            content=yaml.safe_dump(manifest, sort_keys=False), format="yaml", mode="create", source="api"
        )
        try:
            result = await bus(request).call(subjects.REGISTRY_PUT, put, PutManifestResult)
            request.app.state.catalog.invalidate()  # read-your-writes before the change event
        except BusFailure as exc:
            if exc.error.code == "conflict":
                continue  # the name is taken: OpenAI allows duplicate names, so pick another manifest name
            raise
        return assistant_json(result.record)
    raise BusFailure.of("conflict", "could not find a free manifest name for this assistant; give it another name")


@router.get("")
async def list_assistants(
    request: Request,
    limit: int = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    before: str | None = None,
):
    items = [assistant_json(m) for m in await manifests(request, kind="Agent")]
    items.sort(key=lambda a: (a["created_at"], a["id"]))
    return paginate(items, lambda a: a["id"], lambda a: a, limit=limit, order=order, after=after, before=before)


@router.get("/{assistant_id}")
async def get_assistant(request: Request, assistant_id: str):
    return assistant_json(await assistant_record(request, checked_id(assistant_id, "assistant", "assistant_id")))


@router.post("/{assistant_id}")
async def update_assistant(request: Request, assistant_id: str, body: AssistantUpdate):
    require_admin(request, "create, change or delete assistants (they are agent manifests, shared by every project)")
    record = await assistant_record(request, checked_id(assistant_id, "assistant", "assistant_id"))
    changes = body.model_dump(exclude_unset=True, mode="json")
    changes.pop("reasoning_effort", None)
    if changes.get("tool_resources") is not None:
        changes["tool_resources"] = await resolve_resources(request, changes["tool_resources"])
    manifest = apply_assistant_update(record.manifest, changes)
    put = PutManifestRequest(
        content=yaml.safe_dump(manifest, sort_keys=False),
        format="yaml",
        name=record.name,
        mode="upsert",
        source=record.source or "api",
    )
    result = await bus(request).call(subjects.REGISTRY_PUT, put, PutManifestResult)
    request.app.state.catalog.invalidate()  # read-your-writes before the change event
    return assistant_json(result.record)


@router.delete("/{assistant_id}")
async def delete_assistant(request: Request, assistant_id: str):
    require_admin(request, "create, change or delete assistants (they are agent manifests, shared by every project)")
    record = await assistant_record(request, checked_id(assistant_id, "assistant", "assistant_id"))
    await bus(request).call(subjects.REGISTRY_DELETE, DeleteManifestRequest(name=record.name), DeleteManifestResult)
    request.app.state.catalog.invalidate()  # read-your-writes before the change event
    return {"id": assistant_id, "object": "assistant.deleted", "deleted": True}
