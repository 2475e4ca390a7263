"""Running a set of services in one process until SIGINT/SIGTERM, then draining them in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import Protocol

log = logging.getLogger(__name__)


class Runnable(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM ask for a clean stop. A second Ctrl-C while draining exits at once; a repeated
    SIGTERM does not, because process managers may send it more than once and expect a drain."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            if sig == signal.SIGINT:
                log.warning("second SIGINT: exiting without draining")
                raise SystemExit(1)
            return
        log.info("%s received: draining", sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows event loops lack add_signal_handler
            loop.add_signal_handler(sig, on_signal, sig)


async def run_until_stopped(services: Sequence[Runnable], stop: asyncio.Event) -> None:
    """Start services in order; on stop (or a start failure) stop those started, in reverse."""
    started: list[Runnable] = []
    try:
        for service in services:
            await service.start()
            started.append(service)
        await stop.wait()
    finally:
        for service in reversed(started):
            try:
                await asyncio.wait_for(service.stop(), timeout=20)
            except Exception:
                log.exception("%s did not stop cleanly", service.name)
