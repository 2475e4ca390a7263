"""HTTP tools (`spec.tools[].type: http`): the request built from the arguments, bounded in time and
size, and refused when it would reach an address the manifest did not allow.

The guard resolves the host and refuses loopback, private, link-local (cloud metadata services
live at 169.254.169.254), multicast, reserved and unspecified addresses unless the tool sets
`allow_private_network: true`. (The address is resolved again when connecting, so a DNS answer
that changes in between is not caught: put egress rules in front of ossabus for hostile DNS.)
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any
from urllib.parse import urlsplit

import httpx

from ossabus.contracts.agent import HttpBinding
from ossabus.registry.normalize import expand_env


class Refused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any((ip.is_private, ip.is_loopback, ip.is_link_local, ip.is_multicast, ip.is_reserved, ip.is_unspecified))


async def check_destination(url: str, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("invalid_endpoint", f"the tool's endpoint {url!r} is not an http(s) URL")
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port)
    except OSError as exc:
        raise Refused("unreachable", f"cannot resolve {parts.hostname!r}") from exc
    for info in infos:
        if forbidden(info[4][0]):
            raise Refused(
                "ssrf_refused",
                f"{parts.hostname} resolves to {info[4][0]}, a private, loopback or "
                "link-local address; the manifest must set allow_private_network to "
                "call it",
            )


def auth_headers(auth: dict[str, Any] | None) -> dict[str, str]:
    if not auth:
        return {}
    secret = expand_env(str(auth.get("credentials") or auth.get("token") or auth.get("key") or ""))
    if not secret or "${" in secret:
        raise Refused("missing_credentials", "the tool's credentials read an environment variable that is not set")
    kind = str(auth.get("type", "bearer")).lower()
    if kind == "bearer":
        return {"Authorization": f"Bearer {secret}"}
    if kind in ("apikey", "api-key", "api_key"):
        return {str(auth.get("header", "X-API-Key")): secret}
    raise Refused("invalid_auth", f"auth type {kind!r} is not supported (bearer, api-key)")


async def call_http(binding: HttpBinding, arguments: dict[str, Any], timeout: float, limit: int) -> tuple[str, bool]:
    """(response text, whether it was cut at `limit` bytes); Refused for anything that is not a success."""
    url = expand_env(binding.endpoint)
    if "${" in url:
        raise Refused("invalid_endpoint", "the tool's endpoint reads an environment variable that is not set")
    await check_destination(url, binding.allow_private)
    method = binding.method.upper()
    request: dict[str, Any] = {"params": arguments} if method in ("GET", "DELETE") else {"json": arguments}
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        try:
            async with client.stream(method, url, headers=auth_headers(binding.auth), **request) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        break
                text = bytes(body[:limit]).decode(errors="replace")
                cut = len(body) > limit
                if response.status_code >= 400:
                    raise Refused("http_error", f"HTTP {response.status_code}: {text[:500]}")
                return text, cut
        except httpx.TimeoutException as exc:
            raise Refused("timeout", f"{url} did not answer within {timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise Refused("unreachable", f"{url}: {type(exc).__name__}") from exc
