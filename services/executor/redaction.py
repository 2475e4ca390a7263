"""Keys and tokens out of provider texts before they reach a log or a client."""

from __future__ import annotations

import os
import re

_SECRET = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|Bearer\s+[A-Za-z0-9._\-]+|api[_-]?key[=:]\s*\S+)", re.I)


def redact(text: str) -> str:
    """Error texts from providers can echo keys or auth headers; never pass them on."""
    text = _SECRET.sub("[redacted]", text)
    for name, value in os.environ.items():
        if value and len(value) >= 8 and ("KEY" in name or "TOKEN" in name or "SECRET" in name):
            text = text.replace(value, "[redacted]")
    return text[:500]
