"""Assembling processes: `ossabus up` (everything in one process) and `ossabus serve <service>`."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import nats

from ossabus.dispatcher.service import DispatcherService
from ossabus.executor.service import ExecutorService
from ossabus.registry.service import RegistryService
from ossabus.relay.auth import AuthConfigError, configured_keys
from ossabus.relay.service import RelayService
from ossabus.retrieval.service import RetrievalService
from ossabus.runtime import tracing
from ossabus.runtime.bus_auth import SERVICE_USER, BusCredentials, redact
from ossabus.runtime.nats_connect import connect_options, servers
from ossabus.runtime.nats_server import EmbeddedNats
from ossabus.runtime.nats_supervision import supervise
from ossabus.runtime.provision import ClusterNotReady, provision_when_cluster_ready, topology_for
from ossabus.runtime.service import Service
from ossabus.runtime.settings import Settings
from ossabus.runtime.supervisor import install_stop_signals, run_until_stopped
from ossabus.sandbox.service import SandboxService, unavailable_reason
from ossabus.telemetry.service import TelemetryService
from ossabus.workflows.service import WorkflowService

log = logging.getLogger(__name__)

# Start order: the registry first (others resolve agents through it), the HTTP edge last.
SERVICES: dict[str, type[Service]] = {
    "registry": RegistryService,
    "executor": ExecutorService,
    "workflows": WorkflowService,
    "dispatcher": DispatcherService,
    "telemetry": TelemetryService,
    "retrieval": RetrievalService,
    "sandbox": SandboxService,
    "relay": RelayService,
}
MIN_RECOMMENDED_PAYLOAD = 4 * 1024 * 1024


class StartupError(RuntimeError):
    """A reason not to start, worded for the person who ran the command."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """The keys must be readable, and without any the API is open to anyone who can reach it, so only
    loopback is allowed."""
    try:
        keys = configured_keys(settings.auth_file)
    except AuthConfigError as exc:
        raise StartupError(str(exc)) from exc
    if not is_loopback(settings.host) and not keys:
        raise StartupError(
            f"refusing to listen on {settings.host}: without API keys anyone who can reach this address "
            "could use the API. Give --auth-file FILE (keys with projects and roles) or OSSABUS_API_KEYS=key1,key2 "
            "(clients then send 'Authorization: Bearer <key>'), or listen on 127.0.0.1."
        )


async def _ignore(_: Exception) -> None:
    """Connection errors are reported once, by the StartupError that follows."""


async def prepare_bus(settings: Settings) -> None:
    """Connect once to provision streams and buckets, and warn about a too-small max_payload."""
    try:
        # nats-py retries a refused first connect forever unless max_reconnect_attempts > 0, hence
        # one attempt and an overall deadline: a wrong URL must fail the start, not hang it.
        nc = await asyncio.wait_for(
            nats.connect(
                servers(settings.nats_url),
                **connect_options(settings),
                connect_timeout=5,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.5,
                allow_reconnect=False,
                name="ossabus-provision",
                error_cb=_ignore,
            ),
            timeout=15,
        )
    except (Exception, TimeoutError) as exc:
        where = redact(settings.nats_url)
        raise StartupError(f"cannot connect to NATS at {where}: {exc or type(exc).__name__}") from exc
    try:
        if nc.max_payload < MIN_RECOMMENDED_PAYLOAD:
            log.warning(
                "NATS max_payload is %d bytes; set it to at least 4MB so manifests near 1 MiB can be stored",
                nc.max_payload,
            )
        try:
            await provision_when_cluster_ready(
                nc.jetstream(), topology_for(settings.replicas), settings.provision_wait_s
            )
        except Exception as exc:
            hint = "" if isinstance(exc, ClusterNotReady) else " (is JetStream enabled?)"
            raise StartupError(f"cannot provision JetStream at {redact(settings.nats_url)}{hint}: {exc}") from exc
    finally:
        await nc.close()


async def run(settings: Settings, names: list[str], *, embedded: bool) -> None:
    """Start NATS (when embedded), provision, run the named services until a stop signal."""
    if "relay" in names:
        check_exposure(settings)
    if "sandbox" in names and (reason := unavailable_reason()) is not None:
        if not embedded:  # `serve sandbox` was asked for by name: no quiet fallback
            raise StartupError(f"the sandbox cannot start: {reason}")
        log.warning("code_interpreter is off (runs that use it get a tool error): %s", reason)
        names = [n for n in names if n != "sandbox"]
    server: EmbeddedNats | None = None
    supervision: asyncio.Task | None = None
    stop = asyncio.Event()
    install_stop_signals(stop)
    try:
        if embedded and not settings.nats_url:
            credentials = BusCredentials.load_or_create(settings.data_dir)
            server = EmbeddedNats(
                settings.data_dir / "nats",
                settings.nats_host,
                settings.nats_port,
                authorization=credentials.server_config(),
            )
            url = await asyncio.to_thread(server.start)
            host, port = url.removeprefix("nats://").rsplit(":", 1)
            server.port = int(port)  # a restart must come back where the services reconnect to
            settings.nats_url = credentials.url(SERVICE_USER, host, int(port))
            written = credentials.write_urls(host, int(port))
            log.info("embedded nats-server with JetStream at %s (data in %s)", url, server.data_dir)
            log.info(
                "the bus is locked: other systems connect with %s (task publishers) or %s (tool workers); "
                "`ossabus credentials client|worker` prints them",
                written["client"],
                written["worker"],
            )
        await prepare_bus(settings)
        if server is not None:
            supervision = asyncio.create_task(supervise(server, stop))
        services = [SERVICES[n](settings) for n in SERVICES if n in names]
        ready = asyncio.create_task(_announce(services, settings, stop))
        await run_until_stopped(services, stop)
        ready.cancel()
    finally:
        await asyncio.to_thread(tracing.shutdown)  # the last spans leave before the process does
        if supervision is not None:
            stop.set()  # a failed start ends here too: the supervisor must not restart what we stop
            await supervision
        if server is not None:
            await asyncio.to_thread(server.stop)
            log.info("embedded nats-server stopped")


async def _announce(services: list[Service], settings: Settings, stop: asyncio.Event) -> None:
    """Say once, plainly, where things are, when every service has started."""
    while not stop.is_set():
        relay = next((s for s in services if isinstance(s, RelayService)), None)
        if relay is None or (relay.server is not None and relay.server.started):
            where = f"http://{relay.address[0]}:{relay.address[1]}" if relay else "(no HTTP)"
            names = ", ".join(s.name for s in services)
            log.info("ossabus is up: %s; NATS %s; services: %s", where, redact(settings.nats_url), names)
            return
        await asyncio.sleep(0.05)
