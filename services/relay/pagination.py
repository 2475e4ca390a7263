"""OpenAI-style cursor pagination: `limit`, `order`, `after`, `before` -> `{data, first_id, last_id, has_more}`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from ossabus.relay.errors import ApiError

T = TypeVar("T")
MAX_LIMIT = 100


def paginate(
    items: Sequence[T],
    key: Callable[[T], str],
    render: Callable[[T], dict[str, Any]],
    *,
    limit: int = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    before: str | None = None,
    max_limit: int = MAX_LIMIT,
) -> dict[str, Any]:
    """`items` must already be sorted ascending; cursors are item ids and must exist."""
    if not 1 <= limit <= max_limit:
        raise ApiError(400, f"limit must be between 1 and {max_limit}", param="limit", code="invalid_value")
    ordered = list(items) if order == "asc" else list(reversed(items))
    ids = [key(i) for i in ordered]
    start, end = 0, len(ordered)
    if after is not None:
        if after not in ids:
            raise ApiError(400, f"no object with id {after!r} to page after", param="after", code="invalid_value")
        start = ids.index(after) + 1
    if before is not None:
        if before not in ids:
            raise ApiError(400, f"no object with id {before!r} to page before", param="before", code="invalid_value")
        end = ids.index(before)
    window = ordered[start:end]
    page = window[-limit:] if before is not None and after is None else window[:limit]
    data = [render(i) for i in page]
    return {
        "object": "list",
        "data": data,
        "first_id": key(page[0]) if page else None,
        "last_id": key(page[-1]) if page else None,
        "has_more": len(window) > len(page),
    }
