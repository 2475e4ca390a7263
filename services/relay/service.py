"""The relay service: the HTTP edge, served by uvicorn inside our own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn

from ossabus.contracts import subjects
from ossabus.relay.app import create_app
from ossabus.relay.auth import configured_keys
from ossabus.relay.edge import EdgeMiddleware
from ossabus.runtime.bus import BusClient
from ossabus.runtime.provision import topology_for
from ossabus.runtime.service import Service
from ossabus.store import kv as kvs
from ossabus.store.files import Files
from ossabus.store.responses import Responses
from ossabus.store.slots import Slots
from ossabus.store.state import State
from ossabus.store.usage import UsageStore
from ossabus.store.vector_stores import VectorStores

log = logging.getLogger(__name__)


class HttpPortError(RuntimeError):
    pass


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # the supervisor owns SIGINT/SIGTERM for every service
        yield


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """Bind before serving so a taken port is a clear error at start, not a log line and an exit.
    With `reuse_port`, other relay processes bound the same way share the port (Linux spreads the
    connections over them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says TCP; otherwise each keep-alive response stalls ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise HttpPortError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another with --port") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class RelayService(Service):
    name = "relay"

    def __init__(self, settings):
        super().__init__(settings)
        self.server: _Server | None = None
        self.app = None
        self.task: asyncio.Task | None = None
        self.socket: socket.socket | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self.socket is not None
        host, port = self.socket.getsockname()[:2]
        return host, port

    async def start(self) -> None:
        self.socket = bind(self.settings.host, self.settings.port, self.settings.reuse_port)
        await super().start()

    def register(self) -> None:
        self.broker.subscriber(subjects.REGISTRY_CHANGES_ALL)(self.on_registry_change)

    async def on_registry_change(self) -> None:
        if self.app is not None:
            self.app.state.catalog.invalidate()

    async def started(self) -> None:
        js = self.broker.connection.jetstream()
        state = await State.open(js)
        app = create_app(
            self.broker,
            BusClient(self.broker, self.settings.request_timeout_s),
            state,
            max_body_size=self.settings.max_body_bytes,
            keys=configured_keys(self.settings.auth_file),
            topology=topology_for(self.settings.replicas),
        )
        app.state.usage = UsageStore(await kvs.leader_reads(js, await js.key_value(subjects.USAGE_BUCKET)))
        app.state.slots = Slots(state.runs_kv)
        app.state.responses = await Responses.open(js)
        app.state.files = await Files.open(js)
        app.state.vector_stores = await VectorStores.open(js)
        config = uvicorn.Config(
            EdgeMiddleware(app),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=10,
        )
        self.app = app
        self.server = _Server(config)
        assert self.socket is not None
        self.task = asyncio.create_task(self.server.serve(sockets=[self.socket]))
        while not self.server.started and not self.task.done():  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.01)
        if self.task.done():
            self.task.result()
        host, port = self.address
        log.info("HTTP API on http://%s:%d", host, port)

    async def stopping(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
        if self.socket is not None:
            self.socket.close()
