"""The dispatcher's cost: a no-op tool call through it versus straight to the worker, and calls/s.

Round trip of `noop` (a worker that answers at once): a NATS request to `ossa.tools.noop` (what the
dispatcher itself does) against a request to `ossa.dispatcher.call` (arguments checked against the
schema, the call routed, the answer bounded); median and p99 of sequential calls. Then calls per
second through the dispatcher, 64 at a time, with 1 and with 4 worker processes.

    python bench/tools.py [--calls 2000] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import start_ossabus, stop

from ossabus.contracts import subjects
from ossabus.contracts.agent import ToolDefinition
from ossabus.contracts.tools import DispatchRequest

NOOP = (
    DispatchRequest(
        tool=ToolDefinition(name="noop", function_name="noop", parameters={"type": "object"}),
        call_id="call_bench",
        arguments="{}",
    )
    .model_dump_json()
    .encode()
)
DIRECT = b'{"call_id": "call_bench", "name": "noop", "arguments": {}}'


def start_workers(nats_url: str, count: int) -> list[subprocess.Popen]:
    workers = [
        subprocess.Popen([sys.executable, str(Path(__file__).with_name("noop_worker.py")), nats_url])
        for _ in range(count)
    ]
    time.sleep(2)
    return workers


async def latencies(nc, subject: str, body: bytes, count: int) -> list[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        await nc.request(subject, body, timeout=10)
        out.append((time.perf_counter() - started) * 1000)
    return out


async def rate(nc, seconds: float, concurrency: int) -> float:
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker():
        nonlocal done
        while time.perf_counter() < stop_at:
            await nc.request(subjects.DISPATCHER_CALL, NOOP, timeout=10)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def measure(nats_url: str, calls: int, seconds: float, workers: int, with_latency: bool) -> None:
    nc = await nats.connect(nats_url)
    try:
        await latencies(nc, subjects.DISPATCHER_CALL, NOOP, 100)  # warm-up
        if with_latency:
            direct = await latencies(nc, subjects.tool("noop"), DIRECT, calls)
            through = await latencies(nc, subjects.DISPATCHER_CALL, NOOP, calls)
            rows = [
                ("straight to the worker", statistics.median(direct), p99(direct)),
                ("through the dispatcher", statistics.median(through), p99(through)),
            ]
            rows.append(("dispatcher overhead", rows[1][1] - rows[0][1], rows[1][2] - rows[0][2]))
            print(f"no-op round trip, {calls} sequential calls (ms)   median    p99")
            for label, median, high in rows:
                print(f"  {label:<43}{median:7.3f} {high:7.3f}")
        print(
            f"calls/s through the dispatcher, 64 concurrent, {workers} worker process(es): "
            f"{await rate(nc, seconds, 64):.0f}"
        )
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        procs, _, nats_url = start_ossabus({}, Path(tmp), executors=0)
        try:
            for count in (1, 4):
                workers = start_workers(nats_url, count)
                try:
                    asyncio.run(measure(nats_url, args.calls, args.seconds, count, with_latency=count == 1))
                finally:
                    stop(workers)
        finally:
            stop(procs)


if __name__ == "__main__":
    main()
