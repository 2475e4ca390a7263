"""The sessions one worker holds: a kernel per thread, started on first use, closed when idle.

A worker keeps at most `max_sessions` kernels (each is a process with its own memory); when a new
session needs room, the one idle longest is closed (its thread gets a new kernel, with a note, on
its next call). Every session records its project: a call from another project never reaches it.
Files in: a File named by a call is copied into the working directory once (a File's contents
never change). Files out: what the call wrote or changed there, and the figures it displayed,
become Files of purpose `assistants_output` in the session's project.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ossabus.contracts.sandbox import ExecuteRequest, ExecuteResult, OutputFile, SandboxLimits
from ossabus.sandbox.jail import Limits

log = logging.getLogger(__name__)
IDLE_ENV, DEFAULT_IDLE_S = "OSSABUS_SANDBOX_IDLE_S", 20 * 60.0  # OpenAI's containers expire after 20 minutes
MAX_SESSIONS_ENV, DEFAULT_MAX_SESSIONS = "OSSABUS_SANDBOX_MAX_SESSIONS", 16
MAX_OUTPUT_FILE_BYTES = 64 << 20  # a larger file the code wrote stays in the session, unstored
MAX_OUTPUT_FILES = 20  # per call

# (project, filename, bytes) -> the stored File's id
StoreFile = Callable[[str, str, bytes], Awaitable[str]]
# (project, file id) -> (filename, contents), or None when the project has no such File
ReadFile = Callable[[str, str], Awaitable[tuple[str, bytes] | None]]


def operator_limits() -> Limits:
    """The most any session may use on this worker (`OSSABUS_SANDBOX_*`); manifests only go lower."""
    base = Limits()
    env = os.environ.get
    return Limits(
        cpu_seconds=int(env("OSSABUS_SANDBOX_CPU_SECONDS", base.cpu_seconds)),
        memory_bytes=int(env("OSSABUS_SANDBOX_MEMORY_BYTES", base.memory_bytes)),
        processes=int(env("OSSABUS_SANDBOX_PROCESSES", base.processes)),
        file_bytes=int(env("OSSABUS_SANDBOX_FILE_BYTES", base.file_bytes)),
        open_files=base.open_files,
        call_seconds=float(env("OSSABUS_SANDBOX_CALL_SECONDS", base.call_seconds)),
    )


def limits_for(asked: SandboxLimits | None, ceiling: Limits) -> Limits:
    if asked is None:
        return ceiling
    wanted = Limits(
        cpu_seconds=asked.cpu_seconds or ceiling.cpu_seconds,
        memory_bytes=asked.memory_bytes or ceiling.memory_bytes,
        processes=asked.processes or ceiling.processes,
        file_bytes=asked.file_bytes or ceiling.file_bytes,
        open_files=ceiling.open_files,
        call_seconds=asked.call_seconds or ceiling.call_seconds,
    )
    return wanted.within(ceiling)


@dataclass
class Held:
    """One session on this worker."""

    key: str
    project: str
    kernel: object  # kernel.Session (imported lazily: the sandbox extra is optional)
    placed: set[str] = field(default_factory=set)  # File ids already copied in
    last_used: float = field(default_factory=time.monotonic)
    snapshot: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (size, mtime_ns)


class SessionRefused(Exception):
    """A call this worker will not run (wrong project, a File the project lacks)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Sessions:
    def __init__(self, root: Path, worker: str, store_file: StoreFile, read_file: ReadFile):
        self.root, self.worker = root, worker
        self.store_file, self.read_file = store_file, read_file
        self.held: dict[str, Held] = {}
        self.starting: dict[str, asyncio.Lock] = {}
        self.ceiling = operator_limits()
        self.idle_s = float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_S))
        self.max_sessions = int(os.environ.get(MAX_SESSIONS_ENV, DEFAULT_MAX_SESSIONS))
        # told when a kernel starts, before any code runs in it: executors must know where it lives
        # while the first call still runs (to notice this worker dying under it)
        self.on_started: Callable[[str, str], Awaitable[None]] | None = None

    async def execute(self, request: ExecuteRequest) -> ExecuteResult:
        held, new = await self._session(request)
        result = ExecuteResult(session=request.session, worker=self.worker, recreated=new and request.had_session)
        await self._place_files(held, request, result)
        held.snapshot = self._listing(held)
        outcome = await held.kernel.run(request.code)
        held.last_used = time.monotonic()
        result.logs, result.error, result.truncated = outcome.logs, outcome.error, outcome.truncated
        result.kernel_died = outcome.kernel_died
        for image in outcome.images:
            file_id = await self.store_file(held.project, image.name, image.png)
            result.files.append(
                OutputFile(file_id=file_id, filename=image.name, path="", bytes=len(image.png), image=True)
            )
        if not outcome.kernel_died:
            await self._collect_written(held, result)
        else:
            result.notes.append("the kernel died: the next call starts a new one, without this one's variables")
            await self.close(request.session)
        return result

    async def _session(self, request: ExecuteRequest) -> tuple[Held, bool]:
        """The session's kernel, started if this worker does not hold it (one start per key at once)."""
        held = self.held.get(request.session)
        if held is not None and held.project != request.project:
            raise SessionRefused("invalid_request", "no such session in this project")
        if held is not None and held.kernel.alive:
            return held, False
        lock = self.starting.setdefault(request.session, asyncio.Lock())
        async with lock:
            held = self.held.get(request.session)
            if held is not None and held.kernel.alive:
                return held, False
            if held is not None:
                await self.close(request.session)
            await self._make_room()
            from ossabus.sandbox.kernel import Session

            kernel = Session(self.root / os.urandom(6).hex(), limits_for(request.limits, self.ceiling))
            started = time.monotonic()
            await kernel.start()
            log.info("sandbox: session %s started in %.2fs", request.session, time.monotonic() - started)
            held = Held(request.session, request.project, kernel)
            self.held[request.session] = held
            if self.on_started is not None:
                await self.on_started(request.session, request.project)
            return held, True

    async def _make_room(self) -> None:
        while len(self.held) >= self.max_sessions:
            oldest = min(self.held.values(), key=lambda h: h.last_used)
            log.info("sandbox: closing session %s to make room (%d held)", oldest.key, len(self.held))
            await self.close(oldest.key)

    async def _place_files(self, held: Held, request: ExecuteRequest, result: ExecuteResult) -> None:
        work: Path = held.kernel.work
        for wanted in request.files:
            if wanted.file_id in held.placed:
                continue
            found = await self.read_file(held.project, wanted.file_id)
            if found is None:  # deleted, expired, another project's, or a manifest's placeholder id
                result.notes.append(f"file {wanted.file_id} is not available (no such file in this project)")
                continue
            name, data = found
            target = work / safe_name(wanted.filename or name)
            target.write_bytes(data)
            if held.kernel.jail.uid is not None:
                os.chown(target, held.kernel.jail.uid, held.kernel.jail.uid)
            held.placed.add(wanted.file_id)

    @staticmethod
    def _listing(held: Held) -> dict[str, tuple[int, int]]:
        """Files at the top of the working directory (dot-files are the kernel's own: caches, config)."""
        work: Path = held.kernel.work
        listing = {}
        for entry in os.scandir(work):
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            stat = entry.stat(follow_symlinks=False)
            listing[entry.name] = (stat.st_size, stat.st_mtime_ns)
        return listing

    async def _collect_written(self, held: Held, result: ExecuteResult) -> None:
        now = self._listing(held)
        written = sorted(name for name, seen in now.items() if held.snapshot.get(name) != seen)
        held.snapshot = now
        data_dir = held.kernel.data_dir
        for name in written[:MAX_OUTPUT_FILES]:
            size = now[name][0]
            if size > MAX_OUTPUT_FILE_BYTES:
                result.notes.append(f"{name} ({size} bytes) is larger than {MAX_OUTPUT_FILE_BYTES} bytes: not stored")
                continue
            path = held.kernel.work / name
            if path.is_symlink():  # never follow a link the code made out of its directory
                continue
            data = await asyncio.to_thread(path.read_bytes)
            file_id = await self.store_file(held.project, name, data)
            image = (mimetypes.guess_type(name)[0] or "").startswith("image/")
            result.files.append(
                OutputFile(file_id=file_id, filename=name, path=f"{data_dir}/{name}", bytes=len(data), image=image)
            )
        if len(written) > MAX_OUTPUT_FILES:
            result.notes.append(f"{len(written) - MAX_OUTPUT_FILES} more files written: only {MAX_OUTPUT_FILES} stored")

    async def expire_idle(self) -> list[str]:
        cutoff = time.monotonic() - self.idle_s
        gone = [key for key, held in self.held.items() if held.last_used < cutoff]
        for key in gone:
            log.info("sandbox: session %s expired after %.0fs idle", key, self.idle_s)
            await self.close(key)
        return gone

    async def close(self, key: str) -> None:
        held = self.held.pop(key, None)
        self.starting.pop(key, None)
        if held is None:
            return
        await held.kernel.close()
        held.kernel.remove()

    async def close_all(self) -> None:
        for key in list(self.held):
            await self.close(key)
        shutil.rmtree(self.root, ignore_errors=True)


def safe_name(name: str) -> str:
    """A file name with no folder in it (a name like ../../x or /etc/x lands in the working directory)."""
    base = os.path.basename(name.replace("\\", "/")).strip() or "file"
    return base if base not in (".", "..") else "file"
