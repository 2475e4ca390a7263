"""Key-value helpers: typed reads, compare-and-set updates, and prefix scans."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats import errors as nats_errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import (
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    NoStreamResponseError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue
from pydantic import BaseModel

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
STORE = {"store": True}  # serialisation context: stored records keep their hidden fields (a thread's project)


def encode(value: BaseModel) -> bytes:
    return value.model_dump_json(context=STORE).encode()


CAS_ATTEMPTS = 20

# Failures that mean "NATS is not answering right now" (restarting, reconnecting, electing a leader),
# after which the same operation can simply be tried again.
TRANSIENT = (
    TimeoutError,
    nats_errors.NoRespondersError,
    nats_errors.ConnectionReconnectingError,
    nats_errors.OutboundBufferLimitError,
    nats_errors.StaleConnectionError,
    ServiceUnavailableError,
    NoStreamResponseError,  # a publish while a stream elects its leader
)


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
    value = decode(kv, key, entry.value, model)
    return (value, entry.revision) if value is not None else None


def decode(kv: KeyValue, key: str, data: bytes, model: type[M]) -> M | None:
    """A stored record, or None (with a warning) when it is not one: a record written by something
    other than ossabus, or damaged, must not break every listing that meets it."""
    try:
        return model.model_validate_json(data)
    except ValueError as exc:
        log.warning("skipping a corrupt record %s in bucket %s: %s", key, kv._name, type(exc).__name__)
        return None


async def create(kv: KeyValue, key: str, value: BaseModel) -> int:
    try:
        return await kv.create(key, encode(value))
    except KeyWrongLastSequenceError as exc:
        raise Conflict(key) from exc


async def put(kv: KeyValue, key: str, value: BaseModel) -> int:
    return await kv.put(key, encode(value))


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
            await kv.update(key, encode(new), last=revision)
        except KeyWrongLastSequenceError:
            continue
        return new
    raise Conflict(key)


DIRECT_BATCH = 1024  # the most subjects nats-server matches in one multi_last direct get
DIRECT_WAIT_S = 10.0
FETCH_WAIT_S = 2.0
FIRST_LOOK_S = 0.05
MAX_FETCH_ROUNDS = 10_000  # a fetch that finds fewer messages than counted: they were replaced meanwhile
MISSING_ROUNDS = 10  # fetches (FETCH_WAIT_S each) for keys the stream holds but the consumer has not delivered
SNAPSHOT_ATTEMPTS = 8  # listings retried while keys are being written, then read through a consumer


class DirectGetUnavailable(Exception):
    """The direct get API cannot answer this (too many keys, or a stream without allow_direct)."""


async def leader_reads(js, kv: KeyValue) -> KeyValue:
    """Make `kv` read from its stream's leader when the stream is replicated.

    Direct gets (nats-py's default for buckets that allow them, and the batched listings below) are
    answered by any replica, and a follower that lags answers with what it has: in a three-node
    cluster that lost a node, an executor read a run it had just been handed as missing, dropped
    the work message, and the run stayed `queued`. The leader has every acknowledged write.
    A single server is its own leader, so nothing changes there.
    """
    info = await js.stream_info(f"KV_{kv._name}")
    if (info.config.num_replicas or 1) > 1:
        kv._direct = False
    return kv


async def _direct_get(
    kv: KeyValue, request: dict, ending: dict | None = None
) -> list[tuple[str, str | None, bytes, int]]:
    """One batched direct get (`$JS.API.DIRECT.GET`, nats-server >= 2.11): (key, operation, value,
    sequence) of each message, until the server's end-of-batch marker (whose headers go into `ending`)."""
    bucket = kv._name
    prefix = f"$KV.{bucket}."
    nc = kv._js._nc
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    out: list[tuple[str, str | None, bytes, int]] = []
    try:
        await nc.publish(f"$JS.API.DIRECT.GET.KV_{bucket}", json.dumps(request).encode(), reply=inbox)
        while True:
            msg = await sub.next_msg(timeout=DIRECT_WAIT_S)
            headers = msg.headers or {}
            status = headers.get("Status")
            if status == "204":  # end of batch
                if ending is not None:
                    ending.update(headers)
                return out
            if status == "404":  # nothing matches
                return out
            if status:
                raise DirectGetUnavailable(f"{status} {headers.get('Description', '')}".strip())
            key = headers["Nats-Subject"][len(prefix) :]
            out.append((key, headers.get("KV-Operation"), msg.data, int(headers["Nats-Sequence"])))
    finally:
        await sub.unsubscribe()


async def _last_per_key(kv: KeyValue, pattern: str) -> list[tuple[str, str | None, bytes]]:
    """(key, operation, value) of the latest message of each key matching `pattern`.

    A batched direct get, which creates no consumer: a scan per listing used to create an
    ephemeral consumer each, and under load (300 tasks over 2 executors) the stream hit nats-server's
    per-stream consumer limit and runs failed with "maximum consumers limit reached". More than
    `DIRECT_BATCH` keys, or a stream without direct access, falls back to a consumer, deleted after use.
    """
    if not kv._direct:  # replicated: a consumer on the stream, not whichever replica answers first
        return await _scan_stream(kv, pattern)
    subject = f"$KV.{kv._name}.{pattern}"
    try:
        ending: dict = {}
        found = await _direct_get(kv, {"multi_last": [subject], "batch": DIRECT_BATCH}, ending)
        if int(ending.get("Nats-Num-Pending") or 0):
            return await _scan_stream(kv, pattern)  # more keys than one batch holds
        # The server answers as of a sequence it picks at the start. A key written after it has no
        # message up to that sequence any more (a bucket keeping one revision drops the old one), so it
        # would be missing: what was written after that sequence is read too, newest last, until a
        # read finds nothing newer (seen: 1 listing in 12 of four keys being rewritten came back short).
        upto = int(ending.get("Nats-UpTo-Sequence") or 0)
        for _ in range(SNAPSHOT_ATTEMPTS):
            ending = {}
            later = await _direct_get(kv, {"seq": upto + 1, "next_by_subj": subject, "batch": DIRECT_BATCH}, ending)
            if not later:
                break
            found += later
            upto = max(upto, int(ending.get("Nats-UpTo-Sequence") or 0), later[-1][3])
        return [(key, op, data) for key, op, data, _ in sorted(found, key=lambda m: m[3])]
    except DirectGetUnavailable:
        pass
    return await _scan_stream(kv, pattern)  # keys written without pause


async def _scan_stream(kv: KeyValue, pattern: str) -> list[tuple[str, str | None, bytes]]:
    """Every stored message of the matching keys, in stream order, so the last of each key wins.

    Not a last-per-subject consumer: its starting set is fixed when it is made, and a key rewritten
    meanwhile (its old message dropped) could be missing altogether (seen: 3% of listings of four
    keys being rewritten). Read from the start, a key's current message is always still ahead."""
    return await _fetch_all(kv, pattern, DeliverPolicy.ALL)


async def _every_message(kv: KeyValue, key: str) -> list[tuple[str, str | None, bytes]]:
    """(key, operation, value) of every stored message of one key, oldest first, by direct gets
    paged on the stream sequence (no consumer)."""
    if not kv._direct:
        return await _fetch_all(kv, key, DeliverPolicy.ALL)
    out: list[tuple[str, str | None, bytes]] = []
    sequence = 1
    try:
        while True:
            request = {"seq": sequence, "next_by_subj": f"$KV.{kv._name}.{key}", "batch": 256}
            page = await _direct_get(kv, request)
            out.extend((k, op, data) for k, op, data, _ in page)
            if len(page) < 256:
                return out
            sequence = page[-1][3] + 1
    except DirectGetUnavailable:
        return await _fetch_all(kv, key, DeliverPolicy.ALL)


async def _subjects_present(kv: KeyValue, subject_filter: str) -> set[str]:
    """The subjects (keys) the bucket's stream holds a message of, as its leader says."""
    info = await kv._js.stream_info(f"KV_{kv._name}", subjects_filter=subject_filter)
    return set((info.state.subjects or {}).keys())


async def _fetch_all(kv: KeyValue, pattern: str, policy: DeliverPolicy) -> list[tuple[str, str | None, bytes]]:
    """(key, operation, value) of every stored message for keys matching `pattern`, in stream order.

    Not `kv.watch()` / `kv.history()`: they decide they have seen everything from a pending count
    and a delivered counter that race with the server pushing entries, and under load return an
    empty listing (seen: a thread's messages missing from the prompt). An ephemeral pull consumer's
    `num_pending`, asked again after each fetch, says when every message has been delivered.
    """
    bucket = kv._name  # nats-py keeps the bucket name only here
    prefix = f"$KV.{bucket}."
    present = await _subjects_present(kv, f"{prefix}{pattern}")
    sub = await kv._js.pull_subscribe(
        f"{prefix}{pattern}",
        stream=f"KV_{bucket}",
        config=ConsumerConfig(
            deliver_policy=policy, ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True
        ),
    )
    out: list[tuple[str, str | None, bytes]] = []
    name = None
    try:
        info = await sub.consumer_info()
        name = info.name
        # Keys written while we read: a bucket keeping one revision deletes a key's old message when
        # its new one arrives, so a count taken once goes stale (a listing came back one key short, or
        # waited for a message gone). Ask the server how many are left until it says none: the newer
        # message of such a key comes after the start, so it is delivered before that.
        # A consumer just made may count nothing yet while the stream is busy (seen: empty listings
        # of four keys being rewritten): one short look says whether anything is there after all.
        # Each delivered message says how many were left behind it: none means caught up.
        looked = False
        for _ in range(MAX_FETCH_ROUNDS):
            if info.num_pending == 0 and looked:
                break
            looked = True
            caught_up = False
            with contextlib.suppress(TimeoutError, nats_errors.TimeoutError):
                wait = FETCH_WAIT_S if info.num_pending else FIRST_LOOK_S
                for msg in await sub.fetch(max(1, min(info.num_pending, 256)), timeout=wait):
                    out.append((msg.subject[len(prefix) :], (msg.headers or {}).get("KV-Operation"), msg.data))
                    caught_up = msg.metadata.num_pending == 0
            if caught_up:
                break
            info = await sub.consumer_info()
        # A consumer made while its stream elects a leader can count nothing yet and deliver nothing
        # in its first look (seen in a three-node cluster losing a node: a run's prompt listed with no
        # messages, and the model asked with none). Every key the stream held before the consumer
        # was made is still ahead of it: wait for each, and fail rather than answer short.
        for _ in range(MISSING_ROUNDS):
            missing = present - {f"{prefix}{key}" for key, _, _ in out}
            if not missing:
                break
            with contextlib.suppress(TimeoutError, nats_errors.TimeoutError):
                for msg in await sub.fetch(256, timeout=FETCH_WAIT_S):
                    out.append((msg.subject[len(prefix) :], (msg.headers or {}).get("KV-Operation"), msg.data))
        else:
            raise TimeoutError(f"a listing of {pattern} in {bucket} did not deliver every key the stream holds")
    finally:
        await sub.unsubscribe()
        if name is not None:  # or it would count against the stream's consumer limit for 30 s
            with contextlib.suppress(Exception):
                await kv._js.delete_consumer(f"KV_{bucket}", name)
    return out


async def scan(kv: KeyValue, pattern: str, model: type[M]) -> list[M]:
    """Every current value whose key matches `pattern` (NATS wildcards), sorted by key."""
    return [value for _, value in await scan_items(kv, pattern, model)]


async def scan_items(kv: KeyValue, pattern: str, model: type[M]) -> list[tuple[str, M]]:
    """(key, value) of every current value whose key matches `pattern`, sorted by key."""
    found: dict[str, M] = {}
    for key, operation, data in await _last_per_key(kv, pattern):
        value = None if operation in ("DEL", "PURGE") or not data else decode(kv, key, data, model)
        if value is None:
            found.pop(key, None)
        else:
            found[key] = value
    return sorted(found.items())


async def history(kv: KeyValue, key: str, model: type[M]) -> list[M]:
    """Every stored value of one key, oldest first (delete markers skipped)."""
    values = [
        decode(kv, key, data, model)
        for _, op, data in await _every_message(kv, key)
        if op not in ("DEL", "PURGE") and data
    ]
    return [v for v in values if v is not None]


async def delete(kv: KeyValue, key: str) -> None:
    with contextlib.suppress(KeyNotFoundError, NoKeysError):
        await kv.delete(key)
