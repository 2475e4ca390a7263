"""The Conversations API. A conversation is a thread: `conv_` ids for the ones made here, and every
`thread_` id works too, so an Assistants thread is read (and continued, through `/v1/responses`
with `conversation`) without copying anything."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field, field_validator

from ossabus.contracts.ids import new_id
from ossabus.contracts.openai_objects import Thread
from ossabus.relay.auth import caller
from ossabus.relay.context import now, state
from ossabus.relay.errors import ApiError
from ossabus.relay.openai_requests import Metadata, Strict, check_metadata
from ossabus.relay.pagination import paginate
from ossabus.relay.responses.items import conversation_items, message_items
from ossabus.relay.responses.requests import read_input
from ossabus.relay.routes_responses import input_messages
from ossabus.relay.routes_threads import thread_or_404

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
MAX_ITEMS_PER_CALL = 20


class ConversationCreate(Strict):
    metadata: Metadata
    items: list[dict[str, Any]] | None = Field(None, max_length=MAX_ITEMS_PER_CALL)

    _metadata = field_validator("metadata")(check_metadata)


class ConversationUpdate(Strict):
    metadata: dict[str, str]

    _metadata = field_validator("metadata")(check_metadata)


class ItemsCreate(Strict):
    items: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ITEMS_PER_CALL)


def conversation_object(thread: Thread) -> dict[str, Any]:
    return {"id": thread.id, "object": "conversation", "created_at": thread.created_at, "metadata": thread.metadata}


async def conversation_or_404(request: Request, conversation_id: str) -> Thread:
    try:
        return await thread_or_404(request, conversation_id)
    except ApiError as missing:
        raise ApiError(
            404, f"Conversation with id '{conversation_id}' not found.", param="conversation_id", code="not_found"
        ) from missing


async def add_items(request: Request, thread: Thread, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items become thread messages (text, images, function calls with their outputs); what was
    added comes back as items, as the conversation now shows it."""
    read = read_input(items, set())
    messages = input_messages(thread.id, read)
    for message in messages:
        await state(request).put_message(message)
    return [item for message in messages for item in message_items(message)]


@router.post("")
async def create_conversation(request: Request, body: ConversationCreate | None = None):
    body = body or ConversationCreate()
    thread = Thread(id=new_id("conv"), created_at=now(), metadata=body.metadata or {}, project=caller(request).project)
    await state(request).create_thread(thread)
    if body.items:
        await add_items(request, thread, body.items)
    return conversation_object(thread)


@router.get("/{conversation_id}")
async def get_conversation(request: Request, conversation_id: str):
    return conversation_object(await conversation_or_404(request, conversation_id))


@router.post("/{conversation_id}")
async def update_conversation(request: Request, conversation_id: str, body: ConversationUpdate):
    await conversation_or_404(request, conversation_id)
    updated = await state(request).update_thread(
        conversation_id, lambda t: t.model_copy(update={"metadata": body.metadata})
    )
    assert updated is not None
    return conversation_object(updated)


@router.delete("/{conversation_id}")
async def delete_conversation(request: Request, conversation_id: str):
    thread = await conversation_or_404(request, conversation_id)
    active = await state(request).active_run(thread.id)
    if active:
        run = await state(request).get_run(thread.id, active)
        if run is not None and not run.terminal and run.status != "requires_action":
            raise ApiError(409, "A response is in progress on this conversation.", param="conversation_id")
    await state(request).delete_thread(thread.id)
    return {"id": thread.id, "object": "conversation.deleted", "deleted": True}


@router.post("/{conversation_id}/items")
async def create_items(request: Request, conversation_id: str, body: ItemsCreate):
    thread = await conversation_or_404(request, conversation_id)
    added = await add_items(request, thread, body.items)
    return {
        "object": "list",
        "data": added,
        "first_id": added[0]["id"] if added else None,
        "last_id": added[-1]["id"] if added else None,
        "has_more": False,
    }


@router.get("/{conversation_id}/items")
async def list_items(
    request: Request,
    conversation_id: str,
    limit: int = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    include: Annotated[list[str] | None, Query()] = None,
):
    thread = await conversation_or_404(request, conversation_id)
    items = await conversation_items(state(request), thread.id)
    return paginate(items, lambda i: i["id"], lambda i: i, limit=limit, order=order, after=after)


async def item_or_404(request: Request, thread: Thread, item_id: str) -> dict[str, Any]:
    for item in await conversation_items(state(request), thread.id):
        if item["id"] == item_id:
            return item
    raise ApiError(404, f"Item with id '{item_id}' not found.", param="item_id", code="not_found")


@router.get("/{conversation_id}/items/{item_id}")
async def get_item(request: Request, conversation_id: str, item_id: str):
    thread = await conversation_or_404(request, conversation_id)
    return await item_or_404(request, thread, item_id)


@router.delete("/{conversation_id}/items/{item_id}")
async def delete_item(request: Request, conversation_id: str, item_id: str):
    """A message leaves the conversation (the model no longer sees it); a tool call a run made is
    part of that run's record and stays."""
    thread = await conversation_or_404(request, conversation_id)
    item = await item_or_404(request, thread, item_id)
    if item["type"] != "message":
        raise ApiError(
            400,
            f"Only message items can be deleted; {item_id} is a {item['type']} a response made.",
            param="item_id",
            code="invalid_value",
        )
    await state(request).delete_message(thread.id, item_id)
    return conversation_object(thread)
