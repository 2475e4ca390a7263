"""HTTP tools (`spec.tools[].type: http`): the request built from the arguments, bounded in time and
size, sent only where the operator's egress policy allows (`ossabus.runtime.egress`: resolved once,
connected to the checked address, no redirects), with credentials resolved at the moment of the call
from the secrets the operator allows (`ossabus.runtime.secrets`). The endpoint is used as written.
"""

from __future__ import annotations

from typing import Any

import httpx

from ossabus.contracts.agent import HttpBinding
from ossabus.runtime import secrets
from ossabus.runtime.egress import EgressRefused, check_declared_access, pinned_transport, resolve_checked


class Refused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


async def check_destination(url: str, what: str = "the tool's endpoint") -> None:
    """Refused unless the operator's egress policy lets ossabus reach `url`."""
    try:
        await resolve_checked(url, what=what)
    except EgressRefused as refused:
        raise Refused(refused.code, refused.message) from refused


def auth_headers(auth: dict[str, Any] | None) -> dict[str, str]:
    if not auth:
        return {}
    written = str(auth.get("credentials") or auth.get("token") or auth.get("key") or "")
    try:
        secret = secrets.resolve(written, "the tool's credentials")
    except secrets.SecretError as exc:
        raise Refused(exc.code, exc.message) from exc
    if not secret:
        raise Refused("missing_credentials", "the tool's auth block has no credentials")
    kind = str(auth.get("type", "bearer")).lower()
    if kind == "bearer":
        return {"Authorization": f"Bearer {secret}"}
    if kind in ("apikey", "api-key", "api_key"):
        return {str(auth.get("header", "X-API-Key")): secret}
    raise Refused("invalid_auth", f"auth type {kind!r} is not supported (bearer, api-key)")


def check_agent_domains(binding: HttpBinding, url: str) -> None:
    try:
        check_declared_access(binding.network, url, "the tool's endpoint")
    except EgressRefused as refused:
        raise Refused(refused.code, refused.message) from refused


async def call_http(binding: HttpBinding, arguments: dict[str, Any], timeout: float, limit: int) -> tuple[str, bool]:
    """(response text, whether it was cut at `limit` bytes); Refused for anything that is not a success."""
    url = binding.endpoint
    check_agent_domains(binding, url)
    await check_destination(url)
    headers = auth_headers(binding.auth)
    method = binding.method.upper()
    request: dict[str, Any] = {"params": arguments} if method in ("GET", "DELETE") else {"json": arguments}
    transport = pinned_transport(httpx)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=transport) as client:
        try:
            async with client.stream(method, url, headers=headers, **request) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        break
                text = bytes(body[:limit]).decode(errors="replace")
                cut = len(body) > limit
                if 300 <= response.status_code < 400:
                    raise Refused("redirect_refused", f"HTTP {response.status_code}: redirects are not followed")
                if response.status_code >= 400:
                    raise Refused("http_error", f"HTTP {response.status_code}: {text[:500]}")
                return text, cut
        except EgressRefused as refused:
            raise Refused(refused.code, refused.message) from refused
        except httpx.TimeoutException as exc:
            raise Refused("timeout", f"{url} did not answer within {timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise Refused("unreachable", f"{url}: {type(exc).__name__}") from exc
