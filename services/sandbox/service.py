"""The sandbox service: code-interpreter workers serving kernel sessions on the bus.

Answers `ossa.sandbox.execute` in the queue group `ossa-sandbox` (a session no worker holds: this
one starts its kernel) and `ossa.sandbox.worker.<id>.execute` (the sessions it holds). Records
where each session lives in `ossa_sandbox_sessions`, so any executor sends a thread's calls to the
worker holding its kernel; deletes the record when the session ends (idle, room, a dead kernel,
the worker stopping). Reads input Files from, and stores output Files in, the Files store.

Refuses to start where no jail can be made (no bubblewrap, or the `sandbox` extra missing), unless
the operator sets OSSABUS_SANDBOX_UNSAFE_NO_ISOLATION=1.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import tempfile
import time
from pathlib import Path

from ossabus.contracts import subjects
from ossabus.contracts.bus import AnyRequest, BusError
from ossabus.contracts.ids import new_id
from ossabus.contracts.sandbox import ExecuteRequest, ExecuteResult, Pong, SessionPlace
from ossabus.runtime.bus import BusFailure, endpoint
from ossabus.runtime.service import Service
from ossabus.sandbox.jail import UNSAFE_ENV, NoSandbox, SessionDied, bwrap_path
from ossabus.sandbox.sessions import DEFAULT_MAX_SESSIONS, MAX_SESSIONS_ENV, SessionRefused, Sessions
from ossabus.store import kv as kvs
from ossabus.store.files import FileObject, Files

log = logging.getLogger(__name__)
NAME = "sandbox"
REAP_EVERY_S = 30.0
OUTPUT_PURPOSE = "assistants_output"


def unavailable_reason() -> str | None:
    """Why no kernel could be started here, worded for the operator; None when one can. Looked up,
    not imported: `ossabus up` asks at every start, and ipykernel's import takes a while."""
    if any(importlib.util.find_spec(name) is None for name in ("ipykernel", "jupyter_client")):
        return "the code interpreter needs the `sandbox` extra: pip install 'ossabus[sandbox]'"
    if bwrap_path() is None and os.environ.get(UNSAFE_ENV) != "1":
        return (
            "no bubblewrap (bwrap) here to isolate kernels: install it (Debian: apt-get install bubblewrap) "
            f"or point OSSABUS_BWRAP at one; {UNSAFE_ENV}=1 runs code unconfined"
        )
    return None


class SandboxService(Service):
    name = NAME

    def __init__(self, settings):
        super().__init__(settings)
        self.worker = new_id("sbx")
        self.sessions: Sessions | None = None
        self.files: Files | None = None
        self.places = None
        self.reaper: asyncio.Task | None = None

    def register(self) -> None:
        sub = self.broker.subscriber
        # calls of different sessions run side by side (each kernel takes one call at a time)
        parallel = int(os.environ.get(MAX_SESSIONS_ENV, DEFAULT_MAX_SESSIONS))
        sub(subjects.SANDBOX_EXECUTE, queue=subjects.SANDBOX_QUEUE, max_workers=parallel)(
            endpoint(ExecuteRequest, NAME)(self.execute)
        )
        sub(subjects.sandbox_worker(self.worker), max_workers=parallel)(endpoint(ExecuteRequest, NAME)(self.execute))
        sub(subjects.sandbox_ping(self.worker))(endpoint(AnyRequest, NAME)(self.ping))

    async def start(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise NoSandbox(reason)
        await super().start()

    async def started(self) -> None:
        js = self.broker.connection.jetstream()
        self.files = await Files.open(js)
        self.places = await js.key_value(subjects.SANDBOX_SESSIONS_BUCKET)
        root = Path(tempfile.gettempdir()) / "ossabus-sandbox" / self.worker
        self.sessions = Sessions(root, self.worker, self.store_file, self.read_file)
        self.sessions.on_started = self.record_place
        self.reaper = asyncio.create_task(self.reap())
        log.info("sandbox worker %s: up to %d sessions", self.worker, self.sessions.max_sessions)

    async def stopping(self) -> None:
        if self.reaper is not None:
            self.reaper.cancel()
        if self.sessions is not None:
            await self.sessions.close_all()

    async def execute(self, request: ExecuteRequest) -> ExecuteResult:
        assert self.sessions is not None
        try:
            result = await self.sessions.execute(request)
        except SessionRefused as refused:
            raise BusFailure(BusError(code=refused.code, message=refused.message)) from None
        except (NoSandbox, SessionDied) as exc:  # no jail here, or the kernel would not start
            raise BusFailure(BusError(code="unavailable", message=f"the code interpreter cannot run: {exc}")) from None
        return result

    async def record_place(self, session: str, project: str) -> None:
        await kvs.put(self.places, subjects.token(session), SessionPlace(worker=self.worker, project=project))

    async def ping(self, _: AnyRequest) -> Pong:
        return Pong(worker=self.worker, sessions=len(self.sessions.held) if self.sessions else 0)

    async def store_file(self, project: str, filename: str, data: bytes) -> str:
        assert self.files is not None
        record = FileObject(
            id=new_id("file"),
            bytes=len(data),
            created_at=int(time.time()),
            filename=filename,
            purpose=OUTPUT_PURPOSE,
            project=project,
        )
        return (await self.files.create(record, data)).id

    async def read_file(self, project: str, file_id: str) -> tuple[str, bytes] | None:
        assert self.files is not None
        record = await self.files.get(file_id)
        if record is None or (record.project or "default") != project or record.expired:
            return None
        return record.filename, await self.files.content(file_id)

    async def reap(self) -> None:
        assert self.sessions is not None
        while True:
            await asyncio.sleep(min(REAP_EVERY_S, max(1.0, self.sessions.idle_s / 4)))
            try:
                await self.sessions.expire_idle()
            except Exception:
                log.exception("sandbox: expiring idle sessions failed")
