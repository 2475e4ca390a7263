"""New thread messages with text content: what the API, web chats and task messages all write."""

from __future__ import annotations

import time
from typing import Any

from ossabus.contracts.ids import new_id
from ossabus.contracts.openai_objects import Message, MessageContentText, TextContent


def text_message(
    thread_id: str,
    role: str,
    text: str,
    *,
    metadata: dict[str, str] | None = None,
    attachments: list[dict[str, Any]] | None = None,
    message_id: str | None = None,
) -> Message:
    """A completed message, as a client or another system wrote it (`message_id` fixed by a caller
    that may write it twice, so the second write replaces the first)."""
    now = int(time.time())
    return Message(
        id=message_id or new_id("msg"),
        created_at=now,
        completed_at=now,
        thread_id=thread_id,
        status="completed",
        role=role,  # type: ignore[arg-type]
        content=[MessageContentText(text=TextContent(value=text))],
        attachments=attachments or [],
        metadata=metadata or {},
    )
