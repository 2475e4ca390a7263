"""Key-value helpers: typed reads, compare-and-set updates, and prefix scans."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
CAS_ATTEMPTS = 20


class Conflict(Exception):
    """A compare-and-set kept losing, or a create found the key taken."""


async def read(kv: KeyValue, key: str, model: type[M]) -> tuple[M, int] | None:
    """The value and its revision, or None when absent or deleted."""
    try:
        entry = await kv.get(key)
    except (KeyNotFoundError, KeyDeletedError):
        return None
    if not entry.value:
        return None
    return model.model_validate_json(entry.value), entry.revision


async def create(kv: KeyValue, key: str, value: BaseModel) -> int:
    try:
        return await kv.create(key, value.model_dump_json().encode())
    except KeyWrongLastSequenceError as exc:
        raise Conflict(key) from exc


async def put(kv: KeyValue, key: str, value: BaseModel) -> int:
    return await kv.put(key, value.model_dump_json().encode())


async def update(
    kv: KeyValue, key: str, model: type[M], change: Callable[[M], M | None] | Callable[[M], Awaitable[M | None]]
) -> M | None:
    """Apply `change` to the current value with compare-and-set, retrying on concurrent writes.

    `change` returns the new value, or None to leave it as it is; the result is the value stored
    (or the current one when unchanged), or None when the key does not exist.
    """
    for _ in range(CAS_ATTEMPTS):
        current = await read(kv, key, model)
        if current is None:
            return None
        value, revision = current
        new = change(value.model_copy(deep=True))
        if isinstance(new, Awaitable):
            new = await new
        if new is None:
            return value
        try:
            await kv.update(key, new.model_dump_json().encode(), last=revision)
        except KeyWrongLastSequenceError:
            continue
        return new
    raise Conflict(key)


async def scan(kv: KeyValue, pattern: str, model: type[M]) -> list[M]:
    """Every current value whose key matches `pattern` (NATS wildcards), sorted by key."""
    watcher = await kv.watch(pattern, ignore_deletes=True)
    found: dict[str, M] = {}
    try:
        async for entry in watcher:
            if entry is None:
                break
            if entry.value:
                found[entry.key] = model.model_validate_json(entry.value)
    finally:
        await watcher.stop()
    return [found[k] for k in sorted(found)]


async def delete(kv: KeyValue, key: str) -> None:
    with contextlib.suppress(KeyNotFoundError, NoKeysError):
        await kv.delete(key)
