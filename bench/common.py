"""What the benchmarks share: the fake upstream, and ossabus processes on this machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from ossabus.runtime.bus_auth import SERVICE_USER, BusCredentials

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fake() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_llm.py"), "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    port = int(proc.stdout.readline().strip().split("=")[1])
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(base: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"ossabus did not start; see {log}")


def start_ossabus(
    env: dict[str, str],
    data: Path,
    executors: int,
    manifests: Path | None = None,
    bundled: bool = False,
    extra: tuple[str, ...] = (),
    executor_extra: tuple[str, ...] = (),
) -> tuple[list[subprocess.Popen], str, str]:
    """`ossabus up` (embedded NATS), with the executor in-process or as `executors` separate processes.

    Returns (processes, HTTP base URL, NATS URL)."""
    port = free_port()
    log_path = data / "ossabus.log"
    log = log_path.open("w")
    args = ["up", "--data-dir", str(data), "--nats-port", "-1", "--port", str(port)]
    if not bundled:
        args.append("--no-bundled-manifests")
    if manifests:
        args += ["--manifests", str(manifests)]
    if executors:
        args += ["--without", "executor"]
    args += list(extra)
    env = {**os.environ, **env}
    procs = [subprocess.Popen([sys.executable, "-m", "ossabus.cli", *args], env=env, stdout=log, stderr=log)]
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, log_path)
    # the log shows the URL without its password (the bus is locked): its port, with ossabus's own user
    logged = next(
        line.split(" at ")[1].split()[0] for line in log_path.read_text().splitlines() if "embedded nats-server" in line
    )
    where = urlsplit(logged)
    nats_url = BusCredentials.load_or_create(data).url(SERVICE_USER, where.hostname or "127.0.0.1", where.port or 4222)
    for i in range(executors):
        elog = (data / f"executor-{i}.log").open("w")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "ossabus.cli", "serve", "executor", "--nats-url", nats_url, *executor_extra],
                env=env,
                stdout=elog,
                stderr=elog,
            )
        )
    for i in range(executors):
        deadline = time.monotonic() + 60
        while "executor service started" not in (data / f"executor-{i}.log").read_text():
            if time.monotonic() > deadline:
                raise SystemExit(f"executor {i} did not start")
            time.sleep(0.1)
    return procs, base, nats_url


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants (nats-server of an `ossabus up`)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending += [int(c) for c in children]
    return total / 1024
