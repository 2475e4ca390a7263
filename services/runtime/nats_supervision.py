"""Keeping the embedded nats-server alive: `ossabus up` restarts it when it exits.

Without this, an embedded server that died (killed by the OOM killer, a crash, an operator's stray
`kill`) left `ossabus up` running with `/readyz` answering 503 forever. Now it is started again on
the same port and data dir, with a growing pause between attempts (the port may be held for a
moment, or the disk may be full), and the log says what happened each time. Services reconnect by
themselves (their brokers reconnect forever); `/readyz` reports the truth meanwhile, because it asks
JetStream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ossabus.runtime.nats_server import EmbeddedNats, NatsServerError

log = logging.getLogger(__name__)
POLL_S = 0.2
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.5, 30.0


def _last_lines(server: EmbeddedNats, count: int = 3) -> str:
    try:
        lines = server.log_file.read_text(errors="replace").splitlines()[-count:]
    except OSError:
        return "no log"
    return " / ".join(line.split("] ", 1)[-1] for line in lines) or "no log"


async def supervise(server: EmbeddedNats, stop: asyncio.Event) -> None:
    """Run until `stop`: whenever the server's process has exited, start it again."""
    backoff = FIRST_BACKOFF_S
    while not stop.is_set():
        process = server.process
        if process is None or process.poll() is None:
            backoff = FIRST_BACKOFF_S
            await _pause(stop, POLL_S)
            continue
        log.error(
            "the embedded nats-server exited with code %s (%s); restarting it on port %d",
            process.returncode,
            _last_lines(server),
            server.port,
        )
        while not stop.is_set():
            try:
                await asyncio.to_thread(server.start)
            except NatsServerError as exc:
                log.error("could not restart the embedded nats-server: %s; trying again in %.1fs", exc, backoff)
                await _pause(stop, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            log.warning("the embedded nats-server is back at %s; services reconnect on their own", server.url)
            break


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
