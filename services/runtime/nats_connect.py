"""How every ossabus process connects to NATS: credentials and TLS from settings, one place.

`--nats-url` may carry a user and password or a token (`nats://user:pass@host`, `nats://token@host`),
and `tls://` asks for TLS. The other forms NATS offers come as files: a `.creds` file (JWT + nkey,
`--nats-creds`), an nkey seed (`--nats-nkey`), a CA to trust and a client certificate
(`--nats-ca`, `--nats-cert`, `--nats-key`). Services also get their own inbox prefix (see bus_auth).
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

from ossabus.runtime.bus_auth import SERVICE_INBOX_PREFIX
from ossabus.runtime.settings import Settings


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
    options: dict[str, Any] = {}
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
    options = connect_options(settings)
    context = options.pop("tls", None)
    if context is not None:
        from faststream.security import BaseSecurity

        options["security"] = BaseSecurity(ssl_context=context)
    return options
