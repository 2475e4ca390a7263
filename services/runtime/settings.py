"""Process settings, from command-line flags with environment variables as defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

DEFAULT_HTTP_PORT = 8080
DEFAULT_NATS_PORT = 4222


def default_data_dir() -> Path:
    """Per-user data folder (`~/.local/share/ossabus` on Linux), overridable with OSSABUS_DATA_DIR."""
    return Path(os.environ.get("OSSABUS_DATA_DIR") or platformdirs.user_data_dir("ossabus", appauthor=False))


def bundled_manifests_dir() -> Path:
    """The manifests shipped inside the package (the repository's `manifests/` folder)."""
    from importlib import resources

    return Path(str(resources.files("ossabus.manifests")))


@dataclass
class Settings:
    nats_url: str | None = field(default_factory=lambda: os.environ.get("NATS_URL") or None)
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = DEFAULT_HTTP_PORT
    # Several relay processes on one port (SO_REUSEPORT): one process's event loop is what limits the edge.
    reuse_port: bool = field(default_factory=lambda: os.environ.get("OSSABUS_RELAY_REUSE_PORT", "") in ("1", "true"))
    nats_host: str = "127.0.0.1"
    nats_port: int = DEFAULT_NATS_PORT
    manifest_dirs: list[Path] = field(default_factory=list)
    load_bundled_manifests: bool = True
    replicas: int | None = None  # None: 1 for what is created, what exists keeps its replicas
    request_timeout_s: float = 10.0
    max_runs: int = 64
    # How long the work queue waits for an ack (or an in-progress signal) before redelivering a run
    # elsewhere: the time a crashed executor's runs wait before another executor takes them.
    ack_wait_s: float = field(default_factory=lambda: float(os.environ.get("OSSABUS_ACK_WAIT_S", 30.0)))
    # Runs in flight across all executors before the work queue holds back (the durable consumer's
    # max ack pending: backpressure for the whole fleet; --max-runs caps each process).
    max_ack_pending: int = field(default_factory=lambda: int(os.environ.get("OSSABUS_MAX_ACK_PENDING", 4096)))
    # First redelivery delay of a run that failed inside ossabus; doubles per delivery, capped at 30 s.
    redelivery_base_s: float = field(default_factory=lambda: float(os.environ.get("OSSABUS_REDELIVERY_BASE_S", 1.0)))
    # How long startup waits for a JetStream cluster that is still forming (too few peers to place
    # replicated streams, or no meta leader yet) before it gives up.
    provision_wait_s: float = field(default_factory=lambda: float(os.environ.get("OSSABUS_PROVISION_WAIT_S", 60.0)))
    max_body_bytes: int = field(default_factory=lambda: int(os.environ.get("OSSABUS_MAX_BODY_BYTES", 8 * 1024 * 1024)))
    # MCP servers the dispatcher may reach, by the names manifests use (see ossabus.dispatcher.mcp_config).
    mcp_config: str | None = field(default_factory=lambda: os.environ.get("OSSABUS_MCP_CONFIG") or None)
    # API keys with their projects and roles (see ossabus.relay.auth); OSSABUS_API_KEYS adds admins of `default`.
    auth_file: str | None = field(default_factory=lambda: os.environ.get("OSSABUS_AUTH_FILE") or None)
    # NATS credentials and TLS beyond what the URL carries (see ossabus.runtime.nats_connect).
    nats_creds: str | None = field(default_factory=lambda: os.environ.get("OSSABUS_NATS_CREDS") or None)
    nats_nkey: str | None = field(default_factory=lambda: os.environ.get("OSSABUS_NATS_NKEY") or None)
    nats_ca: str | None = field(default_factory=lambda: os.environ.get("OSSABUS_NATS_CA") or None)
    nats_cert: str | None = field(default_factory=lambda: os.environ.get("OSSABUS_NATS_CERT") or None)
    nats_key: str | None = field(default_factory=lambda: os.environ.get("OSSABUS_NATS_KEY") or None)
    log_format: str = field(default_factory=lambda: os.environ.get("OSSABUS_LOG_FORMAT", "text"))
    log_level: str = field(default_factory=lambda: os.environ.get("OSSABUS_LOG_LEVEL", "INFO"))

    def all_manifest_dirs(self) -> list[Path]:
        dirs = [bundled_manifests_dir()] if self.load_bundled_manifests else []
        return [*dirs, *self.manifest_dirs]
