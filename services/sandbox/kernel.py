"""One code-interpreter session: an IPython kernel (ipykernel, spoken to with jupyter_client) inside
its jail, keeping variables and files between calls until it is closed or dies.

The kernel talks over ZeroMQ on Unix sockets in a folder mounted into the jail at the same path: the
jail has no network, so TCP on its loopback would not reach the worker. A call is bounded: its
wall clock (interrupted, then the kernel killed if it does not stop), and its output (what the model
gets is cut at `MAX_KEPT_OUTPUT`; a call printing more than `MAX_OUTPUT` is stopped). A kernel that
dies (memory, a crash, a kill) ends the session; the caller opens a new one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.connect import write_connection_file

from ossabus.sandbox.jail import DATA_DIR, UNSAFE_ENV, Jail, Limits, SessionDied, Slot, processes_of

log = logging.getLogger(__name__)
MAX_KEPT_OUTPUT = 20_000  # characters of logs a call returns
MAX_OUTPUT = 8 << 20  # characters a call may print before it is stopped
START_S = 60.0
GRACE_S = 3.0  # after an interrupt, before the kernel is killed


# Run in the kernel before any call: stdout and stderr stop a call that prints more than the limit, at
# the source (counting iopub messages came too late: the kernel ran out of memory buffering them).
OUTPUT_CAP = """
import sys as _sys

class _CappedStream:
    def __init__(self, inner, budget):
        self._inner, self._budget = inner, budget

    def write(self, text):
        _sys._ossabus_printed = getattr(_sys, "_ossabus_printed", 0) + len(text)
        if _sys._ossabus_printed > {limit}:
            raise RuntimeError("OutputLimit: the call printed more than {limit} characters")
        return self._inner.write(text)

    def __getattr__(self, name):
        return getattr(self._inner, name)

_sys.stdout = _CappedStream(_sys.stdout, {limit})
_sys.stderr = _CappedStream(_sys.stderr, {limit})

def _ossabus_reset(*_):
    _sys._ossabus_printed = 0

get_ipython().events.register("pre_run_cell", _ossabus_reset)
del _CappedStream, _ossabus_reset
"""


@dataclass
class Image:
    name: str
    png: bytes


@dataclass
class CallResult:
    logs: str = ""
    images: list[Image] = field(default_factory=list)
    error: str | None = None  # the exception the code raised (`Name: message`), or a limit it hit
    truncated: bool = False
    kernel_died: bool = False


class Session:
    def __init__(self, root: Path, limits: Limits):
        self.root = root
        self.work = root / "work"
        self.limits = limits
        self.slot: Slot | None = None
        self.jail = Jail(work=self.work, shared=root / "conn", limits=limits)
        self.process: asyncio.subprocess.Process | None = None
        self.client: AsyncKernelClient | None = None
        self.lock = asyncio.Lock()
        self.images_made = 0

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.close()  # the slot and whatever started are given back
            raise

    async def _start(self) -> None:
        self.slot = Slot.claim()
        self.jail = Jail(work=self.work, shared=self.root / "conn", limits=self.limits, slot=self.slot.number)
        self.jail.prepare()
        connection = self.jail.shared / "kernel.json"
        write_connection_file(str(connection), transport="ipc", ip=str(self.jail.shared / "k"))
        startup = self.jail.shared / "startup.py"
        startup.write_text(OUTPUT_CAP.format(limit=MAX_OUTPUT))
        if self.jail.uid is not None:
            for own in (connection, startup):
                os.chown(own, self.jail.uid, self.jail.uid)
        argv = [
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            str(connection),
            "--HistoryManager.enabled=False",
            f"--IPKernelApp.exec_files={startup}",
        ]
        command = argv if os.environ.get(UNSAFE_ENV) == "1" else self.jail.command(argv)
        self.process = await asyncio.create_subprocess_exec(
            *command,
            env={"PATH": "/usr/bin:/bin"},  # bwrap's own environment shows in the jail's /proc/1/environ
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            cwd=self.work,  # unconfined; a jail changes to /mnt/data itself
        )
        client = AsyncKernelClient(connection_file=str(connection))
        client.load_connection_file()
        client.start_channels(hb=False)
        self.client = client
        await self._wait_until_ready(client)

    async def _wait_until_ready(self, client: AsyncKernelClient) -> None:
        """Ask for kernel_info until the kernel answers, as long as its process lives. Not
        jupyter_client's wait_for_ready: without a kernel manager it judges liveness by heartbeats,
        which a kernel still importing on a busy machine does not send within a second."""
        deadline = asyncio.get_running_loop().time() + START_S
        while asyncio.get_running_loop().time() < deadline:
            if not self.alive:
                why = await self._stderr()
                raise SessionDied(f"the kernel did not start: {why or 'it exited'}")
            client.kernel_info()
            try:
                while True:
                    reply = await client.get_shell_msg(timeout=1)
                    if reply["msg_type"] == "kernel_info_reply":
                        break
            except Exception:  # queue.Empty: not yet
                continue
            # The kernel answers on shell before our iopub subscription may have reached it (ZeroMQ's
            # subscriptions travel on their own): a call's output, and the `idle` that ends it, would
            # be lost, and the call would wait out its time bound. Ready means iopub delivers too:
            # each kernel_info request is followed there by its `busy`/`idle` status.
            try:
                await client.get_iopub_msg(timeout=1)
                return
            except Exception:  # queue.Empty: not subscribed yet; ask again
                continue
        raise SessionDied(f"the kernel did not start within {START_S:g} s")

    async def _stderr(self) -> str:
        """The last of what the jail printed, once it has exited (why a kernel did not start)."""
        if self.process is None or self.process.stderr is None:
            return ""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 2)
        if self.process.returncode is None:
            return ""
        return (await self.process.stderr.read()).decode(errors="replace").strip()[-2000:]

    @property
    def data_dir(self) -> str:
        """Where the code finds its files: /mnt/data in the jail; the folder itself when unconfined."""
        return str(self.work) if os.environ.get(UNSAFE_ENV) == "1" else DATA_DIR

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def run(self, code: str) -> CallResult:
        async with self.lock:
            if not self.alive or self.client is None:
                raise SessionDied("the kernel is not running")
            return await self._run(code)

    async def _run(self, code: str) -> CallResult:
        assert self.client is not None
        result = CallResult()
        printed = 0
        pieces: list[str] = []
        msg_id = self.client.execute(code, store_history=False, allow_stdin=False)
        deadline = asyncio.get_running_loop().time() + self.jail.limits.call_seconds
        interrupted_at: float | None = None
        while True:
            now = asyncio.get_running_loop().time()
            if interrupted_at is None and now >= deadline:
                result.error = f"TimeoutError: the call ran longer than {self.jail.limits.call_seconds:g} s"
                interrupted_at = now
                await self._interrupt()
            if interrupted_at is not None and now >= interrupted_at + GRACE_S:
                await self.close()
                result.kernel_died = True
                break
            if not self.alive:
                result.kernel_died = True
                result.error = result.error or "the kernel died (out of memory, a crash or a kill)"
                break
            try:
                message = await self.client.get_iopub_msg(timeout=0.2)
            except Exception:  # queue.Empty from jupyter_client: nothing yet
                continue
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                text = content.get("text", "")
                printed += len(text)
                if sum(len(p) for p in pieces) < MAX_KEPT_OUTPUT:
                    pieces.append(text)
                if printed > MAX_OUTPUT and interrupted_at is None:
                    result.error = f"OutputLimit: the call printed more than {MAX_OUTPUT // (1 << 20)} MiB"
                    interrupted_at = asyncio.get_running_loop().time()
                    await self._interrupt()
            elif kind in ("display_data", "execute_result"):
                data = content.get("data", {})
                if "image/png" in data:
                    self.images_made += 1
                    result.images.append(Image(f"image_{self.images_made}.png", base64.b64decode(data["image/png"])))
                elif "text/plain" in data:
                    pieces.append(data["text/plain"] + "\n")
            elif kind == "error":
                result.error = result.error or f"{content.get('ename')}: {content.get('evalue')}"
            elif kind == "status" and content.get("execution_state") == "idle":
                break
        logs = "".join(pieces)
        if len(logs) > MAX_KEPT_OUTPUT or printed > MAX_KEPT_OUTPUT:
            logs, result.truncated = logs[:MAX_KEPT_OUTPUT] + "\n[output truncated]", True
        result.logs = logs
        return result

    async def _interrupt(self) -> None:
        """Jupyter's interrupt request (the kernel raises KeyboardInterrupt in the code): a signal to
        the process would reach bwrap, which would end the whole session."""
        if self.alive and self.client is not None:
            self.client.control_channel.send(self.client.session.msg("interrupt_request", {}))

    async def close(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
            self.client = None
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.process.wait(), 10)
        # the jail's uid is free again only when the last of its processes is gone: the next session
        # with it would otherwise start with part of its process allowance used up
        uid = self.jail.uid
        for _ in range(100):
            if uid is None or not processes_of(uid):
                break
            await asyncio.sleep(0.05)
        if self.slot is not None:
            self.slot.release()
            self.slot = None

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
