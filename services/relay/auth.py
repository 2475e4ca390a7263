"""API keys, the project each belongs to, and its role.

Keys come from an auth file (`--auth-file` / `OSSABUS_AUTH_FILE`):

    keys:
      - {key: sk-team-a-admin, project: team-a, role: admin, name: ci}
      - {key_sha256: 9f86d0...,  project: team-b, role: member}

or from `OSSABUS_API_KEYS=k1,k2` (each an admin of project `default`). Every object a request stores
belongs to the key's project, and other projects' objects are answered 404 (see `relay.projects`).
Admins also write manifests and read `/metrics`; members use agents and their project's objects.
Without any key the API is open (loopback only, `runtime.stack.check_exposure`): every request is an
admin of `default`.

Keys are kept as SHA-256 digests and compared in constant time; logs and usage name a key by its
fingerprint (`key_` + 12 hex digits of the digest), never by the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from fastapi import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ossabus.contracts.bus import DEFAULT_PROJECT
from ossabus.relay.errors import ApiError, error_response

PROTECTED_PREFIXES = ("/v1", "/api", "/metrics")  # usage and agent names are not for everyone
AUTH_FILE_ENV = "OSSABUS_AUTH_FILE"
KEYS_ENV = "OSSABUS_API_KEYS"
PROJECT_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,62}[a-z0-9])?$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

Role = Literal["admin", "member"]


class AuthConfigError(Exception):
    """The keys cannot be read; ossabus refuses to start rather than run open or half-configured."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: the key's fingerprint, its project and role."""

    key_id: str
    project: str
    role: Role
    name: str | None = None

    @property
    def admin(self) -> bool:
        return self.role == "admin"


ANONYMOUS = Principal(key_id="anonymous", project=DEFAULT_PROJECT, role="admin")


def fingerprint(digest: bytes) -> str:
    return "key_" + digest.hex()[:12]


def principal_of(key: str) -> str:
    """How usage names an API key: a fingerprint, never the key."""
    return fingerprint(hashlib.sha256(key.encode()).digest())


@dataclass(frozen=True)
class KeyRing:
    entries: tuple[tuple[bytes, Principal], ...]

    def __bool__(self) -> bool:
        return bool(self.entries)

    def lookup(self, token: str) -> Principal | None:
        """The key's principal; every entry is compared (constant time in which one matched)."""
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for expected, principal in self.entries:
            if hmac.compare_digest(digest, expected):
                found = principal
        return found


def _entry(item: object, where: str) -> tuple[bytes, Principal]:
    if not isinstance(item, dict):
        raise AuthConfigError(f"{where}: expected a mapping with key (or key_sha256), project and role")
    key, hashed = item.get("key"), item.get("key_sha256")
    if (key is None) == (hashed is None):
        raise AuthConfigError(f"{where}: give exactly one of `key` and `key_sha256`")
    if key is not None:
        if not isinstance(key, str) or not key.strip() or key != key.strip() or " " in key:
            raise AuthConfigError(f"{where}: a key must be a non-empty string without blanks")
        digest = hashlib.sha256(key.encode()).digest()
    else:
        if not isinstance(hashed, str) or not _HEX64.fullmatch(hashed.lower()):
            raise AuthConfigError(f"{where}: key_sha256 must be 64 hex digits")
        digest = bytes.fromhex(hashed.lower())
    project = item.get("project", DEFAULT_PROJECT)
    if not isinstance(project, str) or not PROJECT_NAME.fullmatch(project):
        raise AuthConfigError(f"{where}: project must be a lowercase name (letters, digits, - and _)")
    role = item.get("role", "member")
    if role not in ("admin", "member"):
        raise AuthConfigError(f"{where}: role must be admin or member")
    name = item.get("name")
    return digest, Principal(fingerprint(digest), project, role, str(name) if name is not None else None)


def load_auth_file(path: str | Path) -> KeyRing:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise AuthConfigError(f"cannot read the auth file {path}: {type(exc).__name__}") from exc
    items = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise AuthConfigError(f"{path}: expected `keys:` with at least one entry")
    entries = [_entry(item, f"{path}: keys[{i}]") for i, item in enumerate(items)]
    digests = [d for d, _ in entries]
    if len(set(digests)) != len(digests):
        raise AuthConfigError(f"{path}: the same key is listed twice")
    return KeyRing(tuple(entries))


def keys_from_env(value: str) -> KeyRing:
    keys = [k.strip() for k in value.split(",")]
    if not any(keys) or any(not k for k in keys):
        raise AuthConfigError(f"{KEYS_ENV} is set but holds an empty key; give key1,key2 or unset it")
    return KeyRing(tuple(_entry({"key": k, "project": DEFAULT_PROJECT, "role": "admin"}, KEYS_ENV) for k in keys))


def configured_keys(auth_file: str | None = None) -> KeyRing:
    """The keys from the auth file and `OSSABUS_API_KEYS` (both may be given); empty when neither is."""
    entries: list[tuple[bytes, Principal]] = []
    path = auth_file or os.environ.get(AUTH_FILE_ENV)
    if path:
        entries += load_auth_file(path).entries
    if os.environ.get(KEYS_ENV) is not None:
        entries += keys_from_env(os.environ[KEYS_ENV]).entries
    return KeyRing(tuple(entries))


def install_auth(app, keys: KeyRing) -> None:
    if keys:
        app.add_middleware(RequireKey, keys=keys)


class RequireKey:
    """The key check as a plain ASGI layer: Starlette's `@app.middleware("http")` runs every request
    in a task group and passes every chunk of a streamed answer through a memory stream."""

    def __init__(self, app: ASGIApp, keys: KeyRing):
        self.app, self.keys = app, keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIXES):
            await self.app(scope, receive, send)
            return
        found = self._check(scope)
        if not isinstance(found, Principal):
            await found(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = found
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> Principal | JSONResponse:
        """Who the request's key names, or the refusal to answer with."""
        header = next((v for k, v in scope.get("headers") or [] if k == b"authorization"), b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return error_response(401, "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
        found = self.keys.lookup(token)
        if found is None:
            return error_response(401, "incorrect API key provided", code="invalid_api_key")
        if scope["path"].startswith("/metrics") and not found.admin:
            return error_response(403, "only an admin key may read /metrics", code="permission_denied")
        return found


def caller(request: Request) -> Principal:
    """Who is asking; without configured keys, an admin of the default project."""
    return getattr(request.state, "principal", ANONYMOUS)


def principal(request: Request) -> str:
    """Who is asking, for usage accounting: the API key's fingerprint, or `anonymous` without keys."""
    return caller(request).key_id


def require_admin(request: Request, action: str) -> None:
    if not caller(request).admin:
        raise ApiError(403, f"only an admin key may {action}", code="permission_denied")
