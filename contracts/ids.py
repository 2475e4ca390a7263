"""Ids in OpenAI's style: a type prefix and 24 random alphanumerics (`thread_`, `run_`, `msg_`, ...)."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """`prefix` + `_` + 24 random characters, e.g. `run_4fQ...`; `chatcmpl` takes `-` as OpenAI's does."""
    sep = "-" if prefix == "chatcmpl" else "_"
    return prefix + sep + "".join(secrets.choice(_ALPHABET) for _ in range(24))
