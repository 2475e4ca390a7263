"""Ids in OpenAI's style (`thread_`, `run_`, `msg_`, `step_`, `call_`, `chatcmpl-`), sortable by creation.

The first 9 characters encode the creation time in milliseconds and a per-process counter, in an
alphabet whose order is ASCII order, so sorting ids sorts by creation; OpenAI-style pagination
(`after`, `before`, `order`) then needs no secondary index. The rest is random.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import string
import threading
import time

_SORTED = string.digits + string.ascii_uppercase + string.ascii_lowercase  # ASCII order
_counter = itertools.count()
_lock = threading.Lock()
_last = [0, 0]


def _base62(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        out.append(_SORTED[digit])
    return "".join(reversed(out))


def _time_part() -> str:
    """Milliseconds (7 chars, good past year 3000) + a 2-char sequence within the millisecond."""
    with _lock:
        now = time.time_ns() // 1_000_000
        if now <= _last[0]:
            now, seq = _last[0], _last[1] + 1
            if seq >= 62 * 62:  # more than 3844 ids in one ms: borrow the next ms
                now, seq = now + 1, 0
        else:
            seq = 0
        _last[0], _last[1] = now, seq
    return _base62(now, 7) + _base62(seq, 2)


def new_id(prefix: str) -> str:
    """`prefix` + `_` (or `-` for `chatcmpl` and `file`, as OpenAI does) + 24 characters, e.g. `run_0kZ3...`."""
    sep = "-" if prefix in ("chatcmpl", "file") else "_"
    # 15 characters from 96 random bits in one call (a choice per character cost 15 system calls)
    return prefix + sep + _time_part() + _base62(int.from_bytes(secrets.token_bytes(12), "big"), 15)


def derived_id(prefix: str, seed: str) -> str:
    """The same id for the same seed (a task's message id, a web chat's id): a retry finds what the
    first attempt created instead of making a second one."""
    return f"{prefix}_" + hashlib.sha256(f"{prefix}:{seed}".encode()).hexdigest()[:24]


def fixed_id(prefix: str, at_ms: int, seed: str) -> str:
    """An id that sorts by `at_ms` (like `new_id`'s) and is the same for the same seed: what a
    redelivered message writes again replaces what its first delivery wrote, in the same place."""
    digest = int.from_bytes(hashlib.sha256(f"{prefix}:{seed}".encode()).digest()[:12], "big")
    return f"{prefix}_" + _base62(at_ms, 7) + _base62(digest % (62 * 62), 2) + _base62(digest, 15)
