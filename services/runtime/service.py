"""The shape every ossabus service shares: a FastStream NATS broker, subscribers, start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import ClassVar

from faststream.nats import NatsBroker
from nats.errors import ConnectionReconnectingError
from opentelemetry import trace

from ossabus.runtime import tracing
from ossabus.runtime.direct_subscription import DirectHandler, DirectSubscription
from ossabus.runtime.nats_connect import broker_options, servers
from ossabus.runtime.settings import Settings

log = logging.getLogger(__name__)
GRACEFUL_S = 15.0  # what a running handler is given to finish when its service stops


def make_broker(settings: Settings, name: str) -> NatsBroker:
    """A broker that reconnects forever: a NATS restart must not take a service down."""
    assert settings.nats_url, "the NATS URL is known before services are built"
    middlewares = []
    if tracing.enabled():  # publish/process spans on every hop, W3C trace context in the headers
        from faststream.nats.opentelemetry import NatsTelemetryMiddleware

        middlewares.append(NatsTelemetryMiddleware(tracer_provider=trace.get_tracer_provider()))
    return NatsBroker(
        servers(settings.nats_url),
        **broker_options(settings),
        middlewares=middlewares,
        name=f"ossabus-{name}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # back soon after a NATS restart: carriers waiting to write renew their leases first
        logger=logging.getLogger(f"ossabus.bus.{name}"),
        log_level=logging.DEBUG,
        graceful_timeout=GRACEFUL_S,
    )


class Service:
    """Base of the five services; `register` adds subscribers before the broker starts."""

    name: ClassVar[str]

    def __init__(self, settings: Settings):
        self.settings = settings
        self.broker = make_broker(settings, self.name)
        self._direct: list[DirectSubscription] = []

    def register(self) -> None:
        """Declare subscribers on `self.broker`."""

    def direct_handlers(self) -> list[DirectHandler]:
        """Request handlers served on plain nats-py subscriptions of the broker's connection, not
        through FastStream: the per-request hot path only (see `runtime.direct_subscription`)."""
        return []

    async def started(self) -> None:
        """Runs once the broker is connected and subscribers are live."""

    async def stopping(self) -> None:
        """Runs before the broker drains; stop accepting new work here."""

    async def start(self) -> None:
        self.register()
        await self.broker.start()
        await self.started()
        # after `started`: a direct handler may need what it set up (the executor's chat service)
        for handler in self.direct_handlers():
            subscription = DirectSubscription(self.broker.connection, handler)
            await subscription.start()
            self._direct.append(subscription)
        # SUBs leave through nats-py's flusher: without a round trip, a request sent right after
        # start() returns can reach the server first and find no responders.
        await self.broker.connection.flush(timeout=10)
        log.info("%s service started", self.name)

    async def stop(self) -> None:
        try:
            # first, while what they use is still there (the executor closes its provider pool in `stopping`)
            await asyncio.gather(*(s.stop(GRACEFUL_S) for s in self._direct), return_exceptions=True)
            await self.stopping()
        finally:
            connection = self.broker._connection
            try:
                await self.broker.stop()
            except ConnectionReconnectingError:
                # Stopped during a NATS outage: a drain needs the server. What was not acknowledged is
                # redelivered to whoever carries on; the connection is closed so nothing waits for it.
                log.warning("%s: NATS is unreachable, stopped without draining", self.name)
                with contextlib.suppress(Exception):  # its socket is gone: closing only ends its tasks
                    await connection.close()
                self.broker._connection = None
        log.info("%s service stopped", self.name)
