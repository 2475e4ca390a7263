"""Runs per second through the work queue, what a run costs on the bus, and how long a killed
executor's runs take to finish.

Task messages (`ossa.tasks.<agent>`) are published all at once and timed until every result is in,
with an instant upstream and with one that waits 200 ms before answering, for 1, 2 and 4 executor
processes. With a 200 ms upstream runs are bound by waiting, not by CPU, so more executors should
finish them faster even on this 2-core machine. For the one-executor instant round, every message
on the bus is tallied (bus_tally.py): the JetStream round trips a run costs, by kind.
`--max-runs N` gives each executor N run slots instead of 64: with few slots one executor is bound
by waiting on the upstream (N runs per 200 ms), which is what adding executors is for; with 64 it
is bound by this machine's CPU, and a second executor only shares the same two cores.
Then an executor is killed with SIGKILL in the middle of slow runs and the time until the survivor
has finished all of them is measured, for the default ack wait (30 s) and a short one (5 s).

    python bench/runs.py [--tasks 200] [--kill-tasks 16] [--executors 1,2,4] [--max-runs 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bus_tally import BusTally
from common import ROOT, start_fake, start_ossabus, stop

from ossabus.client import OssabusClient

AGENTS = ROOT / "tests" / "agents"


async def run_tasks(nats_url: str, texts: list[str]) -> tuple[float, list[float]]:
    async with await OssabusClient.connect(nats_url, timeout=600) as client:
        started = time.perf_counter()
        tasks = [await client.submit("echo-agent", text) for text in texts]
        latencies: list[float] = []

        async def one(task):
            result = await task.result()
            assert result.status == "completed", result
            latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one(t) for t in tasks))
        return time.perf_counter() - started, latencies


def throughput(
    env: dict[str, str], executors: int, texts: list[str], tally: bool = False, max_runs: int = 64
) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        procs, _, nats_url = start_ossabus(
            env, Path(tmp), executors, AGENTS, executor_extra=("--max-runs", str(max_runs))
        )
        try:
            asyncio.run(run_tasks(nats_url, texts[:10]))  # warm-up
            if tally:
                asyncio.run(tallied(nats_url, texts[:50]))
            elapsed, latencies = asyncio.run(run_tasks(nats_url, texts))
        finally:
            stop(procs)
    return len(texts) / elapsed, statistics.median(latencies)


async def tallied(nats_url: str, texts: list[str]) -> None:
    tally = BusTally()
    await tally.start(nats_url)
    try:
        await tally.settle()
        tally.reset()
        await run_tasks(nats_url, texts)
        await tally.settle()
        print(f"what one run costs on the bus ({len(texts)} runs, one executor, instant upstream):")
        print("\n".join(tally.report(len(texts))))
    finally:
        await tally.stop()


def recovery(env: dict[str, str], count: int, ack_wait: str) -> float:
    env = {**env, "OSSABUS_ACK_WAIT_S": ack_wait}
    with tempfile.TemporaryDirectory() as tmp:
        procs, _, nats_url = start_ossabus(env, Path(tmp), 2, AGENTS)
        victim = procs[1]
        try:

            async def scenario() -> float:
                async with await OssabusClient.connect(nats_url, timeout=600) as client:
                    tasks = [
                        await client.submit("echo-agent", f"slow {i} [[long:40]] [[delay:50]]") for i in range(count)
                    ]
                    await asyncio.sleep(1.0)  # runs are streaming on both executors
                    victim.send_signal(signal.SIGKILL)
                    killed = time.perf_counter()
                    results = await asyncio.gather(*(t.result() for t in tasks))
                    assert all(r.status == "completed" for r in results)
                    return time.perf_counter() - killed

            return asyncio.run(scenario())
        finally:
            stop(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--kill-tasks", type=int, default=16)
    parser.add_argument("--skip-throughput", action="store_true", help="measure only the recovery from a kill")
    parser.add_argument("--skip-recovery", action="store_true", help="measure only the throughput")
    parser.add_argument("--executors", default="1,2,4", help="executor process counts to compare")
    parser.add_argument("--tally-only", action="store_true", help="only what a run costs on the bus")
    parser.add_argument("--max-runs", type=int, default=64, help="run slots of each executor process")
    args = parser.parse_args()
    fake, fake_url = start_fake()
    env = {**os.environ, "OPENAI_BASE_URL": f"{fake_url}/v1", "OPENAI_API_KEY": "sk-bench"}
    try:
        if args.tally_only:
            throughput(env, 1, [f"task {i}" for i in range(60)], tally=True)
            return
        if not args.skip_throughput:
            measure_throughput(env, args.tasks, [int(n) for n in args.executors.split(",")], args.max_runs)
        if args.skip_recovery:
            return
        print(f"\nSIGKILL of one of two executors in the middle of {args.kill_tasks} slow (~2 s) runs:")
        for ack_wait in ("30", "5"):
            seconds = recovery(env, args.kill_tasks, ack_wait)
            print(f"ack wait {ack_wait:>2} s: every run finished {seconds:.1f} s after the kill")
    finally:
        fake.terminate()


def measure_throughput(env: dict[str, str], count: int, counts: list[int], max_runs: int) -> None:
    print(f"{count} task messages published at once, timed until every result is in; {max_runs} slots per executor")
    rates = {}
    rows = []
    for label, directive in (("instant", ""), ("200 ms", " [[slow:0.2]]")):
        texts = [f"task {i}{directive}" for i in range(count)]
        for executors in counts:
            first = label == "instant" and executors == counts[0]
            rate, median = throughput(env, executors, texts, tally=first, max_runs=max_runs)
            rates[(label, executors)] = rate
            rows.append(f"{label:<12}{executors:>20}{rate:>10.1f}{median:>26.2f}")
    print(f"\n{'upstream':<12}{'executor processes':>20}{'runs/s':>10}{'median time to result s':>26}")
    print("\n".join(rows))
    for label in ("instant", "200 ms"):
        for executors in counts[1:]:
            ratio = rates[(label, executors)] / rates[(label, counts[0])]
            print(f"{executors} executors vs {counts[0]}, {label} upstream: {ratio:.2f}x")


if __name__ == "__main__":
    main()
