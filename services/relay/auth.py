"""Bearer API keys for `/v1` and `/api` when `OSSABUS_API_KEYS` is set (comma-separated)."""

from __future__ import annotations

import hashlib
import hmac
import os

from fastapi import Request

from ossabus.relay.errors import error_response

PROTECTED_PREFIXES = ("/v1", "/api", "/metrics")  # usage and agent names are not for everyone


def configured_keys() -> list[str]:
    return [k.strip() for k in os.environ.get("OSSABUS_API_KEYS", "").split(",") if k.strip()]


def install_auth(app, keys: list[str]) -> None:
    if not keys:
        return
    encoded = [k.encode() for k in keys]

    @app.middleware("http")
    async def require_key(request: Request, call_next):
        if request.url.path.startswith(PROTECTED_PREFIXES):
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                return error_response(
                    401, "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
                )
            if not any(hmac.compare_digest(token.strip().encode(), key) for key in encoded):
                return error_response(401, "incorrect API key provided", code="invalid_api_key")
            request.state.principal = principal_of(token.strip())
        return await call_next(request)


def principal_of(key: str) -> str:
    """How usage names an API key: a fingerprint, never the key."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def principal(request: Request) -> str:
    """Who is asking, for usage accounting: the API key's fingerprint, or `anonymous` without keys."""
    return getattr(request.state, "principal", "anonymous")
