"""The code interpreter: cold start of a session, a trivial call in a warm one, memory per session
and sessions per worker, each next to what a user would run instead.

  1. cold start: a jailed kernel (bubblewrap, limits, its own uid) until it answers its first call,
     against jupyter_client's own unconfined kernel (`start_new_async_kernel`) and against a fresh
     `python -c` per call (what a hand-rolled "exec the code" tool does);
  2. warm call (`x = 1`): through the bus as an executor sends it (ExecuteRequest to the worker
     holding the session, reply back), against the same jailed kernel called in-process, and the
     unconfined jupyter kernel;
  3. memory: resident memory of one session's processes, idle and after `import pandas, matplotlib`;
  4. sessions per worker: N sessions started at once in one worker, their total memory, the time
     until all answer.

Needs the `sandbox` extra and bubblewrap (or OSSABUS_SANDBOX_UNSAFE_NO_ISOLATION=1, which then
measures unconfined kernels only).

    python bench/sandbox.py [--calls 50] [--sessions 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from jupyter_client.manager import start_new_async_kernel

from ossabus.contracts import subjects
from ossabus.contracts.openai_objects import FunctionCall, ToolCall
from ossabus.executor import code_interpreter
from ossabus.runtime.bus import BusClient
from ossabus.runtime.nats_server import EmbeddedNats
from ossabus.runtime.provision import provision
from ossabus.runtime.service import make_broker
from ossabus.runtime.settings import Settings
from ossabus.sandbox.jail import Limits, statuses_of
from ossabus.sandbox.kernel import Session
from ossabus.sandbox.service import SandboxService


def quiet(_message) -> None:
    """The unconfined kernel's output, not echoed to this terminal."""


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def rss_of_uid(uid: int) -> int:
    """Resident bytes of every process running as `uid` (one jailed session's processes)."""
    return sum(int(fields["VmRSS"].split()[0]) * 1024 for fields in statuses_of(uid) if "VmRSS" in fields)


async def jailed_cold(tmp: Path, runs: int) -> list[float]:
    times = []
    for n in range(runs):
        session = Session(tmp / f"cold-{n}", Limits())
        started = time.perf_counter()
        await session.start()
        await session.run("1")
        times.append(time.perf_counter() - started)
        await session.close()
        session.remove()
    return times


async def jupyter_cold(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        manager, client = await start_new_async_kernel(kernel_name="python3", stderr=subprocess.DEVNULL)
        await client.execute_interactive("1", timeout=30, output_hook=quiet)
        times.append(time.perf_counter() - started)
        client.stop_channels()
        await manager.shutdown_kernel(now=True)
    return times


def subprocess_cold(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "x = 1"], check=True)
        times.append(time.perf_counter() - started)
    return times


async def warm_calls(url: str, tmp: Path, calls: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    # in-process, the jailed kernel alone
    session = Session(tmp / "warm", Limits())
    await session.start()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await session.run("x = 1")
        samples.append(time.perf_counter() - started)
    out["jailed kernel, in-process"] = samples
    uid = session.jail.uid
    await session.run("import pandas, matplotlib.pyplot")
    out["_memory"] = [float(rss_of_uid(uid)) if uid is not None else 0.0]
    await session.close()
    session.remove()

    # through the bus, as the executor calls it
    worker = SandboxService(Settings(nats_url=url, load_bundled_manifests=False))
    await worker.start()
    broker = make_broker(Settings(nats_url=url), "bench")
    await broker.start()
    bus = BusClient(broker)
    places = await broker.connection.jetstream().key_value(subjects.SANDBOX_SESSIONS_BUCKET)
    call = ToolCall(id="call_1", function=FunctionCall(name="python", arguments=json.dumps({"code": "x = 1"})))
    await code_interpreter.execute(bus, places, call, session="bench", project="p", file_ids=[], limits=None)
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await code_interpreter.execute(bus, places, call, session="bench", project="p", file_ids=[], limits=None)
        samples.append(time.perf_counter() - started)
    out["ossabus over NATS"] = samples
    await worker.stop()
    await broker.stop()

    manager, client = await start_new_async_kernel(kernel_name="python3", stderr=subprocess.DEVNULL)
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await client.execute_interactive("x = 1", timeout=30, output_hook=quiet)
        samples.append(time.perf_counter() - started)
    out["jupyter kernel, unconfined"] = samples
    client.stop_channels()
    await manager.shutdown_kernel(now=True)
    return out


async def many_sessions(tmp: Path, count: int) -> tuple[float, int]:
    sessions = [Session(tmp / f"many-{n}", Limits()) for n in range(count)]
    started = time.perf_counter()
    await asyncio.gather(*(s.start() for s in sessions))
    await asyncio.gather(*(s.run("1") for s in sessions))
    took = time.perf_counter() - started
    memory = sum(rss_of_uid(s.jail.uid) for s in sessions if s.jail.uid is not None)
    for s in sessions:
        await s.close()
        s.remove()
    return took, memory


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ossabus-bench-sandbox-"))
    server = EmbeddedNats(tmp / "nats", port=-1)
    url = server.start()
    try:
        import nats

        nc = await nats.connect(url)
        await provision(nc.jetstream())
        await nc.close()

        print(f"cold start ({args.cold} each; median)")
        jailed = median_ms(await jailed_cold(tmp, args.cold))
        jupyter = median_ms(await jupyter_cold(args.cold))
        fresh = median_ms(subprocess_cold(args.cold))
        print(f"  ossabus session (bubblewrap, own uid, limits) {jailed:8.1f} ms")
        print(f"  jupyter_client kernel, unconfined             {jupyter:8.1f} ms   ({jailed / jupyter:.2f}x)")
        print(f"  python -c per call                            {fresh:8.1f} ms   (no state kept)")

        warm = await warm_calls(url, tmp, args.calls)
        memory = warm.pop("_memory")[0]
        print(f"\nwarm call `x = 1` ({args.calls} each; median)")
        bus = median_ms(warm["ossabus over NATS"])
        for name, samples in warm.items():
            ms = median_ms(samples)
            print(f"  {name:<36} {ms:8.2f} ms   (ossabus over NATS: {bus / ms:.2f}x this)")

        print("\nmemory of one session")
        print(f"  after import pandas, matplotlib: {memory / 2**20:8.1f} MiB resident")
        took, total = await many_sessions(tmp, args.sessions)
        print(f"\n{args.sessions} sessions started at once in one worker")
        each = total / args.sessions / 2**20
        print(f"  all answering after {took:.2f} s; {total / 2**20:.0f} MiB resident ({each:.0f} MiB each, idle)")
        print(f"  (this machine: {os.cpu_count()} cores; a worker holds 16 at most: OSSABUS_SANDBOX_MAX_SESSIONS)")
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
