"""`/v1/threads` and their messages."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request

from ossabus.contracts.ids import new_id
from ossabus.contracts.openai_objects import Message, Thread
from ossabus.relay.auth import DEFAULT_PROJECT, caller
from ossabus.relay.context import checked_id, not_found, now, state
from ossabus.relay.errors import ApiError
from ossabus.relay.openai_requests import MessageCreate, MessageUpdate, ThreadCreate, ThreadUpdate
from ossabus.relay.pagination import paginate
from ossabus.relay.thread_files import add_to_thread_store, check_attachments, check_resources, resolve_resources
from ossabus.store.messages import text_message

router = APIRouter(prefix="/v1/threads", tags=["threads"])


def message_from(thread_id: str, body: MessageCreate) -> Message:
    return text_message(
        thread_id, body.role, body.text(), metadata=body.metadata or {}, attachments=body.attachments or []
    )


async def thread_or_404(request: Request, thread_id: str) -> Thread:
    """The thread, if it belongs to the caller's project; another project's thread is not found, as at
    OpenAI (a 403 would tell the caller that the id exists)."""
    thread = await state(request).get_thread(checked_id(thread_id, "thread", "thread_id"))
    if thread is None or not owned(request, thread):
        raise not_found("thread", thread_id, "thread_id")
    return thread


def owned(request: Request, thread: Thread) -> bool:
    return (thread.project or DEFAULT_PROJECT) == caller(request).project


async def message_or_404(request: Request, thread_id: str, message_id: str) -> Message:
    await thread_or_404(request, thread_id)
    message = await state(request).get_message(thread_id, checked_id(message_id, "message", "message_id"))
    if message is None:
        raise not_found("message", message_id, "message_id")
    return message


async def create_thread_from(request: Request, body: ThreadCreate) -> Thread:
    searched = [
        await check_attachments(request, m.attachments, f"messages[{i}].attachments")
        for i, m in enumerate(body.messages)
    ]
    await check_resources(request, body.tool_resources)  # all refusals come before any write
    thread = Thread(
        id=new_id("thread"),
        created_at=now(),
        tool_resources=await resolve_resources(request, body.tool_resources),
        metadata=body.metadata or {},
        project=caller(request).project,
    )
    for message in body.messages:
        await state(request).put_message(message_from(thread.id, message))
    thread = await state(request).create_thread(thread)
    return await add_to_thread_store(request, thread, [f for ids in searched for f in ids])


@router.post("")
async def create_thread(request: Request, body: ThreadCreate | None = None):
    return await create_thread_from(request, body or ThreadCreate())


@router.get("/{thread_id}")
async def get_thread(request: Request, thread_id: str):
    return await thread_or_404(request, thread_id)


@router.post("/{thread_id}")
async def update_thread(request: Request, thread_id: str, body: ThreadUpdate):
    await thread_or_404(request, thread_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("tool_resources") is not None:
        changes["tool_resources"] = await resolve_resources(request, changes["tool_resources"])

    def change(thread: Thread) -> Thread:
        return thread.model_copy(
            update={k: v if v is not None else ({} if k == "metadata" else None) for k, v in changes.items()}
        )

    return await state(request).update_thread(thread_id, change)


@router.delete("/{thread_id}")
async def delete_thread(request: Request, thread_id: str):
    await thread_or_404(request, thread_id)
    await state(request).delete_thread(thread_id)
    return {"id": thread_id, "object": "thread.deleted", "deleted": True}


@router.post("/{thread_id}/messages")
async def create_message(request: Request, thread_id: str, body: MessageCreate):
    thread = await thread_or_404(request, thread_id)
    active = await state(request).active_run(thread_id)
    if active is not None:
        raise ApiError(
            400,
            f"Can't add messages to {thread_id} while a run {active} is active.",
            param="thread_id",
            code="run_active",
        )
    searched = await check_attachments(request, body.attachments, "attachments")
    message = await state(request).put_message(message_from(thread_id, body))
    await add_to_thread_store(request, thread, searched)
    return message


@router.get("/{thread_id}/messages")
async def list_messages(
    request: Request,
    thread_id: str,
    limit: int = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    before: str | None = None,
    run_id: str | None = None,
):
    await thread_or_404(request, thread_id)
    messages = await state(request).list_messages(thread_id)
    if run_id is not None:
        messages = [m for m in messages if m.run_id == run_id]
    return paginate(
        messages,
        lambda m: m.id,
        lambda m: m.model_dump(mode="json"),
        limit=limit,
        order=order,
        after=after,
        before=before,
    )


@router.get("/{thread_id}/messages/{message_id}")
async def get_message(request: Request, thread_id: str, message_id: str):
    return await message_or_404(request, thread_id, message_id)


@router.post("/{thread_id}/messages/{message_id}")
async def update_message(request: Request, thread_id: str, message_id: str, body: MessageUpdate):
    await message_or_404(request, thread_id, message_id)
    metadata = body.metadata or {}
    return await state(request).update_message(
        thread_id, message_id, lambda m: m.model_copy(update={"metadata": metadata})
    )


@router.delete("/{thread_id}/messages/{message_id}")
async def delete_message(request: Request, thread_id: str, message_id: str):
    await message_or_404(request, thread_id, message_id)
    await state(request).delete_message(thread_id, message_id)
    return {"id": message_id, "object": "thread.message.deleted", "deleted": True}
