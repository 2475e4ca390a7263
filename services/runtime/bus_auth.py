"""The locked bus: who may connect to NATS, and what each role may do there.

`ossabus up` starts its nats-server with three users whose passwords it generates once and keeps in
`<data dir>/credentials/` (folder 0700, files 0600):

- `ossabus`, ossabus's own services: everything (streams, KV buckets, every subject);
- `client`, systems that run agents and workflows over NATS: publish `ossa.tasks.>`, `ossa.ask.>`,
  `ossa.workflows.>`, `ossa.control.workflows.*.cancel`, `ossa.ext.>`, `ossa.runs.answer`; read `ossa.events.>`
  (live, or replayed through ordered consumers of the events stream) and replies (`_INBOX.>`);
- `worker`, tool workers (`ossabus.tools` and others): serve `ossa.tools.>` and answer the calls,
  announce on `ossa.announce.tools.>`, hear the roll call.

Nobody else connects (the server refuses unauthenticated connections), only `ossabus` reaches the
JetStream API and the `$KV` subjects, and ossabus's services use their own inbox prefix so a client
allowed `_INBOX.>` never sees a service's replies (which carry stored state). The same matrix is
written out for an operator's own NATS in `infra/nats/` and documented next to the AsyncAPI contract.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from ossabus.contracts import subjects

SERVICE_USER = "ossabus"
ROLES = ("ossabus", "client", "worker")
# Replies to ossabus's own requests (KV reads, registry calls) go here, out of clients' sight.
SERVICE_INBOX_PREFIX = "_INBOX_ossabus"
CREDENTIALS_DIR = "credentials"


def permissions() -> dict[str, dict]:
    """Per-role NATS permissions, as nats-server's `authorization.users[].permissions`."""
    prefix, events = subjects.PREFIX, subjects.EVENTS_STREAM
    return {
        "ossabus": {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}},
        "client": {
            "publish": {
                "allow": [
                    f"{prefix}.tasks.>",
                    f"{prefix}.ask.>",
                    f"{prefix}.workflows.>",
                    f"{prefix}.control.workflows.*.cancel",
                    subjects.EXTERNAL_EVENTS_ALL,
                    subjects.RUN_ANSWER,
                    # replaying a run's events from its start: ordered consumers on the events stream only
                    f"$JS.API.CONSUMER.CREATE.{events}",
                    f"$JS.API.CONSUMER.CREATE.{events}.>",
                    f"$JS.API.CONSUMER.INFO.{events}.>",
                    f"$JS.API.CONSUMER.DELETE.{events}.>",
                    f"$JS.FC.{events}.>",
                ],
            },
            "subscribe": {"allow": [f"{prefix}.events.>", "_INBOX.>"]},
        },
        "worker": {
            "publish": {"allow": [f"{prefix}.announce.tools.>"]},
            "subscribe": {"allow": [f"{prefix}.tools.>", subjects.TOOL_ROLL_CALL]},
            "allow_responses": True,
        },
    }


@dataclass(frozen=True)
class BusCredentials:
    folder: Path
    passwords: dict[str, str]

    @classmethod
    def load_or_create(cls, data_dir: Path) -> BusCredentials:
        """The passwords kept in the data dir, generated on first use (files the owner alone can read)."""
        folder = Path(data_dir) / CREDENTIALS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        store = folder / "bus.json"
        passwords: dict[str, str] = {}
        if store.exists():
            try:
                passwords = {k: v for k, v in json.loads(store.read_text()).items() if k in ROLES and v}
            except (ValueError, AttributeError):
                passwords = {}
        if set(passwords) != set(ROLES):
            passwords = {role: passwords.get(role) or secrets.token_urlsafe(32) for role in ROLES}
            _write_private(store, json.dumps(passwords, indent=2) + "\n")
        return cls(folder, passwords)

    def url(self, role: str, host: str, port: int) -> str:
        return f"nats://{role}:{quote(self.passwords[role], safe='')}@{host}:{port}"

    def write_urls(self, host: str, port: int) -> dict[str, Path]:
        """`<role>.url` for the roles other systems use, for `ossabus credentials` and for people."""
        written = {}
        for role in ("client", "worker"):
            path = self.folder / f"{role}.url"
            _write_private(path, self.url(role, host, port) + "\n")
            written[role] = path
        return written

    def server_config(self) -> str:
        """The `authorization` block of nats-server's configuration."""
        rules = permissions()
        users = [{"user": role, "password": self.passwords[role], "permissions": rules[role]} for role in ROLES]
        return "authorization {\n  users: " + json.dumps(users, indent=2) + "\n}\n"


PASSWORD_VARIABLES = {role: f"NATS_{role.upper()}_PASSWORD" for role in ROLES}


def operator_config() -> str:
    """`infra/nats/auth.conf`: the same users and permissions for an operator's own nats-server, with
    each password read from an environment variable (nats-server refuses to start when one is unset)."""
    rules = permissions()
    lines = [
        "# The ossabus permission matrix (contracts/bus-permissions.md) for your own nats-server.",
        "# Generated by `ossabus contracts nats-auth`; every password comes from the environment:",
        "# " + ", ".join(PASSWORD_VARIABLES.values()) + " (nats-server will not start without them).",
        "authorization {",
        "  users: [",
    ]
    for role in ROLES:
        lines.append(
            f"    {{user: {role}, password: ${PASSWORD_VARIABLES[role]}, permissions: {json.dumps(rules[role])}}}"
        )
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def local_url(role: str, data_dir: Path) -> str | None:
    """The URL `ossabus up` wrote for `role` under `data_dir`, if it did."""
    path = Path(data_dir) / CREDENTIALS_DIR / f"{role}.url"
    return path.read_text().strip() if path.exists() else None


def default_url(role: str) -> str:
    """Where a client or tool worker on this machine connects when it is given no URL: `NATS_URL`,
    else what the local `ossabus up` wrote for its role, else the default port without credentials."""
    from ossabus.runtime.settings import default_data_dir

    return os.environ.get("NATS_URL") or local_url(role, default_data_dir()) or "nats://127.0.0.1:4222"


def redact(url: str | None) -> str:
    """A NATS URL fit for a log line: no password or token."""
    if not url:
        return str(url)
    out = []
    for one in url.split(","):
        parts = urlsplit(one.strip())
        if parts.username or parts.password:
            host = parts.hostname or ""
            netloc = f"{parts.username}:***@{host}" if parts.password else f"***@{host}"
            if parts.port:
                netloc += f":{parts.port}"
            one = urlunsplit(parts._replace(netloc=netloc))
        out.append(one)
    return ",".join(out)
