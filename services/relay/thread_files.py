"""Files given to threads and assistants, as OpenAI takes them: `tool_resources.file_search`
with `vector_store_ids` (the caller's stores) or `vector_stores: [{file_ids, chunking_strategy,
metadata}]` (a store made on the spot), and message `attachments` whose tools include
`file_search`, which go into the thread's own store, made when the first one arrives (named after
the thread, expiring 7 days after its last activity, as OpenAI's thread stores do).

Everything a request names is checked before anything is made, so a refused request leaves no
store behind."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from ossabus.contracts.openai_objects import Thread
from ossabus.relay.context import state
from ossabus.relay.errors import ApiError
from ossabus.relay.routes_files import file_or_404
from ossabus.relay.routes_vector_stores import ExpiresAfter, StoreCreate, attach, make_store, store_or_404

THREAD_STORE_DAYS = 7
ATTACHMENT_TOOLS = {"file_search", "code_interpreter"}


def _file_search(resources: dict[str, Any] | None) -> dict[str, Any]:
    found = (resources or {}).get("file_search")
    return found if isinstance(found, dict) else {}


async def check_resources(request: Request, resources: dict[str, Any] | None) -> None:
    """Refuse what would not work (another project's store, an unknown file, two stores) before
    anything is written."""
    wanted = _file_search(resources)
    ids, inline = wanted.get("vector_store_ids"), wanted.get("vector_stores")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise ApiError(400, "vector_store_ids is a list of ids", param="tool_resources.file_search.vector_store_ids")
    if inline is not None and not isinstance(inline, list):
        raise ApiError(400, "vector_stores is a list", param="tool_resources.file_search.vector_stores")
    if len(ids or []) + len(inline or []) > 1:
        raise ApiError(
            400, "file_search takes one vector store here", param="tool_resources.file_search.vector_store_ids"
        )
    for store_id in ids or []:
        await store_or_404(request, store_id)
    for i, spec in enumerate(inline or []):
        if not isinstance(spec, dict):
            raise ApiError(400, "a vector store is an object", param=f"tool_resources.file_search.vector_stores[{i}]")
        for file_id in spec.get("file_ids") or []:
            await file_or_404(request, file_id)


async def resolve_resources(request: Request, resources: dict[str, Any] | None) -> dict[str, Any] | None:
    """`tool_resources` as stored: inline `vector_stores` made into stores, named by id."""
    if resources is None:
        return None
    await check_resources(request, resources)
    wanted = _file_search(resources)
    inline = wanted.get("vector_stores") or []
    if not inline:
        return resources
    spec = inline[0]
    made = await make_store(
        request,
        StoreCreate(
            file_ids=spec.get("file_ids"),
            chunking_strategy=spec.get("chunking_strategy"),
            metadata=spec.get("metadata"),
        ),
    )
    search = {k: v for k, v in wanted.items() if k != "vector_stores"}
    search["vector_store_ids"] = [*(wanted.get("vector_store_ids") or []), made.id]
    return {**resources, "file_search": search}


def searched_attachments(attachments: list[dict[str, Any]] | None, where: str) -> list[str]:
    """The file ids of attachments meant for file_search; malformed attachments are a 400."""
    out = []
    for i, attachment in enumerate(attachments or []):
        file_id = attachment.get("file_id") if isinstance(attachment, dict) else None
        if not isinstance(file_id, str) or not file_id:
            raise ApiError(400, "an attachment needs a `file_id`", param=f"{where}[{i}].file_id")
        tools = attachment.get("tools") or []
        kinds = [t.get("type") if isinstance(t, dict) else None for t in tools]
        if not isinstance(tools, list) or any(k not in ATTACHMENT_TOOLS for k in kinds):
            raise ApiError(400, "attachment tools are file_search or code_interpreter", param=f"{where}[{i}].tools")
        if "file_search" in kinds:
            out.append(file_id)
    return out


async def check_attachments(request: Request, attachments: list[dict[str, Any]] | None, where: str) -> list[str]:
    file_ids = searched_attachments(attachments, where)
    for file_id in file_ids:
        await file_or_404(request, file_id)
    return file_ids


async def add_to_thread_store(request: Request, thread: Thread, file_ids: list[str]) -> Thread:
    """Put the files into the thread's store (its first file_search store, or a new one)."""
    if not file_ids:
        return thread
    ids = _file_search(thread.tool_resources).get("vector_store_ids") or []
    store = await store_or_404(request, ids[0]) if ids else None
    if store is None:
        store = await make_store(
            request,
            StoreCreate(
                name=f"thread {thread.id}",
                expires_after=ExpiresAfter(anchor="last_active_at", days=THREAD_STORE_DAYS),
            ),
        )

        def with_store(current: Thread) -> Thread:
            resources = dict(current.tool_resources or {})
            search = dict(_file_search(resources))
            search["vector_store_ids"] = [store.id]
            resources["file_search"] = search
            return current.model_copy(update={"tool_resources": resources})

        thread = await state(request).update_thread(thread.id, with_store) or thread
    for file_id in file_ids:
        await attach(request, store, file_id, None, None)
    return thread
