"""Running a set of services in one process until SIGINT/SIGTERM, then draining them in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
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


def leave(code: int) -> int:
    """End a server process that has stopped its services: `code`, or, while a daemon thread still
    runs, `os._exit(code)` once the logs and standard streams are flushed.

    Why: a daemon thread (the credentials check imports litellm in one, for seconds) may still be
    inside native code when the interpreter finalizes; CPython then ends it with `pthread_exit`,
    whose unwinding through a C++ frame that swallows exceptions aborts the whole process
    ("FATAL: exception not rethrown", SIGABRT), seen about once in a hundred quick stops. Nothing is
    left to finalize by then: the services drained, the spans were exported, the data is on disk."""
    if not any(t.daemon and t.is_alive() for t in threading.enumerate()):
        return code
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
