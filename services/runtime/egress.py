"""Where ossabus may connect on a manifest's behalf: the operator's egress policy.

HTTP tools, MCP servers named by URL and a manifest's `base_url` are addresses an untrusted
manifest author chose. They may reach public addresses (`is_global`, with the embedded IPv4 of
IPv4-mapped, 6to4 and NAT64 addresses checked too); everything else (loopback, private ranges,
link-local with the cloud metadata services, carrier-grade NAT, site-local) only when the operator
lists it in `OSSABUS_EGRESS_ALLOW` (hostnames, `*.domain`, CIDRs, comma-separated). A manifest's
`allow_private_network` cannot widen this: the operator's policy decides.

A name is resolved once, every address it resolves to is checked, and the connection goes to the
checked address (`pinned_transport`): a DNS answer that changes between check and connect
(rebinding) cannot redirect it. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

ALLOW_ENV = "OSSABUS_EGRESS_ALLOW"
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class EgressRefused(Exception):
    """A destination the policy does not allow, or cannot be checked; `code` goes to the caller."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def check_declared_access(access: Any, url: str, what: str = "the address") -> None:
    """The agent's own `security.network_access` (an `ossabus.contracts.agent.NetworkAccess`): a
    destination it did not list, listed as blocked, or reached by a scheme it did not allow is
    refused, whatever the operator's policy would allow. It is checked before the operator's policy
    and can only narrow it. `*.example.com` matches subdomains."""
    if access is None:
        return
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()

    def listed(patterns: list[str]) -> bool:
        return any(host == p or fnmatch.fnmatchcase(host, p) for p in patterns)

    declared = "the agent's security.network_access"
    if access.egress_policy == "deny-all":
        raise EgressRefused("egress_refused", f"{what}: {declared} has egress_policy deny-all")
    if access.protocols is not None and parts.scheme.lower() not in access.protocols:
        raise EgressRefused("egress_refused", f"{what}: {parts.scheme} is not in {declared}.protocols")
    if listed(access.blocked_domains):
        raise EgressRefused("egress_refused", f"{what}: {host} is in {declared}.blocked_domains")
    if access.egress_policy == "allow-all":
        return
    if access.allowed_domains is None:
        if access.egress_policy == "allow-list":
            raise EgressRefused("egress_refused", f"{what}: {declared} is an allow-list without allowed_domains")
        return
    if not listed(access.allowed_domains):
        raise EgressRefused("egress_refused", f"{what}: {host} is not in {declared}.allowed_domains")


def _embedded_v4(ip: Address) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: Address) -> bool:
    """Reachable on the public internet, and not a way around that test (mapped, 6to4, NAT64)."""
    inner = _embedded_v4(ip)
    if inner is not None:
        return is_public(inner)
    if isinstance(ip, ipaddress.IPv6Address) and (ip in _SITE_LOCAL or ip.teredo is not None):
        return False
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class EgressPolicy:
    hosts: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    _raw: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, text: str) -> EgressPolicy:
        hosts, domains, networks = set(), [], []
        entries = [e.strip() for e in text.split(",") if e.strip()]
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                domains.append(entry[1:].lower())
            else:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(domains), tuple(networks), tuple(entries))

    @classmethod
    def from_env(cls) -> EgressPolicy:
        return cls.parse(os.environ.get(ALLOW_ENV, ""))

    def allows_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self.hosts or any(host.endswith(d) for d in self.domains)

    def allows(self, host: str, ip: Address) -> bool:
        inner = _embedded_v4(ip)
        candidates = [ip, inner] if inner is not None else [ip]
        if is_public(ip) or self.allows_host(host):
            return True
        return any(c in net for c in candidates for net in self.networks if c.version == net.version)


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve_checked(url: str, policy: EgressPolicy | None = None, what: str = "the address") -> tuple[str, str]:
    """(host, checked address) for an http(s) URL, or EgressRefused. Every address the name resolves
    to must pass: an answer mixing a public and a private address is refused."""
    policy = policy or EgressPolicy.from_env()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EgressRefused("invalid_endpoint", f"{what} {url!r} is not an http(s) URL")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise EgressRefused("invalid_endpoint", f"{what} {url!r} has an invalid port") from exc
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise EgressRefused("unreachable", f"cannot resolve {host!r}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if not addresses:
        raise EgressRefused("unreachable", f"cannot resolve {host!r}")
    for address in addresses:
        if not policy.allows(host, address):
            raise EgressRefused(
                "egress_refused",
                f"{what} {host} resolves to {address}, which is not a public address, and the operator's "
                f"egress policy ({ALLOW_ENV}) does not allow it",
            )
    return host, str(addresses[0])


def pinned_transport(httpx_module: Any, policy: EgressPolicy | None = None, **transport_options: Any) -> Any:
    """An httpx (or httpx2) transport that checks every request's destination and connects to the
    address it checked, keeping the name for the Host header and TLS (SNI, certificate check)."""
    base = httpx_module.AsyncHTTPTransport

    class PinnedTransport(base):
        async def handle_async_request(self, request):
            url = str(request.url)
            host, address = await resolve_checked(url, policy)
            if _literal(host) is None:  # the request already carries `Host: <name>` from its URL
                request.extensions = {**request.extensions, "sni_hostname": host}
                request.url = request.url.copy_with(host=address)
            return await super().handle_async_request(request)

    return PinnedTransport(**transport_options)
