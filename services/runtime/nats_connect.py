"""How every ossabus process connects to NATS: credentials and TLS from settings, one place.

`--nats-url` may list several servers, comma-separated (a cluster's nodes), and may carry a user
and password or a token (`nats://user:pass@host`, `nats://token@host`),
and `tls://` asks for TLS. The other forms NATS offers come as files: a `.creds` file (JWT + nkey,
`--nats-creds`), an nkey seed (`--nats-nkey`), a CA to trust and a client certificate
(`--nats-ca`, `--nats-cert`, `--nats-key`). Services also get their own inbox prefix (see bus_auth).
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

from ossabus.runtime.bus_auth import SERVICE_INBOX_PREFIX
from ossabus.runtime.settings import Settings


def servers(url: str) -> list[str]:
    """The servers of a NATS URL, which may list a cluster's nodes (`tls://a:4222,tls://b:4222`),
    without their credentials (see `url_credentials`). nats-py takes a list (it does not split a
    string) and tries the next node when one goes away."""
    out = []
    for part in (p.strip() for p in url.split(",")):
        if part:
            parts = urlsplit(part if "://" in part else f"nats://{part}")
            host = parts.hostname or ""
            netloc = f"[{host}]" if ":" in host else host
            out.append(f"{parts.scheme}://{netloc}{f':{parts.port}' if parts.port else ''}")
    return out


def url_credentials(url: str) -> dict[str, str]:
    """`user` and `password`, or `token`, from the first server of the URL that carries them.

    Given as connection options rather than left in the URLs: nats-py connects to the servers a
    cluster announces (and reconnects to them when a node dies) with the options' credentials only,
    so credentials inside the URLs were missing there: seen as `Authorization Violation` on every
    reconnect after a node of a three-node cluster was killed.
    """
    for part in (p.strip() for p in url.split(",")):
        parts = urlsplit(part if "://" in part else f"nats://{part}")
        if parts.username and parts.password is not None:
            return {"user": unquote(parts.username), "password": unquote(parts.password)}
        if parts.username:
            return {"token": unquote(parts.username)}
    return {}


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    wants_tls = any(urlsplit(u.strip()).scheme == "tls" for u in (settings.nats_url or "").split(","))
    if not (wants_tls or settings.nats_ca or settings.nats_cert):
        return None
    context = ssl.create_default_context(cafile=settings.nats_ca) if settings.nats_ca else ssl.create_default_context()
    if settings.nats_cert:
        context.load_cert_chain(settings.nats_cert, settings.nats_key)
    return context


def connect_options(settings: Settings, *, service: bool = True) -> dict[str, Any]:
    """Keyword arguments for `nats.connect` (besides the URL)."""
    options: dict[str, Any] = url_credentials(settings.nats_url or "")
    if settings.nats_creds:
        options["user_credentials"] = settings.nats_creds
    if settings.nats_nkey:
        options["nkeys_seed"] = settings.nats_nkey
    context = tls_context(settings)
    if context is not None:
        options["tls"] = context
    if service:
        options["inbox_prefix"] = SERVICE_INBOX_PREFIX
    return options


def broker_options(settings: Settings) -> dict[str, Any]:
    """The same for FastStream's NatsBroker, which takes TLS as a security object."""
    from faststream.security import BaseSecurity, SASLPlaintext

    options = connect_options(settings)
    context = options.pop("tls", None)
    if "user" in options:
        user, password = options.pop("user"), options.pop("password")
        options["security"] = SASLPlaintext(username=user, password=password, ssl_context=context)
    elif context is not None:
        options["security"] = BaseSecurity(ssl_context=context)
    return options
