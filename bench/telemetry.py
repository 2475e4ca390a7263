"""The cost of tracing: chat completions per second and time to first token with telemetry on
(every span exported, to a JSON-lines file: `OSSABUS_TRACES_FILE`) versus off (the default: no
exporter, the no-op tracer). Metrics and usage accounting run in both: they are not optional.

    python bench/telemetry.py [--seconds 8] [--requests 200] [--rounds 2]

Everything shares this machine's cores (fake upstream, nats-server, ossabus, load generator);
the two configurations run alternately, and medians are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import start_fake, start_ossabus, stop

BODY = {"model": "openai/fake-model", "messages": [{"role": "user", "content": "hi"}]}


async def ttft(client: httpx.AsyncClient, count: int) -> float:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        first = None
        async with client.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True}) as response:
            async for line in response.aiter_lines():
                if first is None and '"content"' in line:
                    first = time.perf_counter() - start
        samples.append(first or time.perf_counter() - start)
    return statistics.median(samples) * 1000


async def rate(client: httpx.AsyncClient, seconds: float, concurrency: int = 32) -> float:
    done, stop_at = 0, time.perf_counter() + seconds

    async def worker():
        nonlocal done
        while time.perf_counter() < stop_at:
            (await client.post("/v1/chat/completions", json=BODY)).raise_for_status()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def measure(traced: bool, fake_url: str, args) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"OPENAI_BASE_URL": f"{fake_url}/v1", "OPENAI_API_KEY": "sk-bench"}
        if traced:
            env["OSSABUS_TRACES_FILE"] = str(Path(tmp) / "spans.jsonl")
        procs, base, _ = start_ossabus(env, Path(tmp), 0)
        try:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
                await rate(client, 1)  # warm-up
                first = await ttft(client, args.requests)
                per_second = await rate(client, args.seconds)
            if traced:
                text = await asyncio.to_thread(Path(env["OSSABUS_TRACES_FILE"]).read_text)
                spans = len(text.splitlines())
                print(f"  (traced: {spans} spans written)")
            return first, per_second
        finally:
            stop(procs)


async def main(args) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    fake, fake_url = start_fake()
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    try:
        for _ in range(args.rounds):
            for traced in (False, True):
                results[traced].append(await measure(traced, fake_url, args))
    finally:
        fake.terminate()
    print(f"\nchat completions through ossabus, medians of {args.rounds} rounds, telemetry off vs on:")
    print(f"{'tracing':<10}{'TTFT ms (1 stream)':>20}{'completions/s (32 at once)':>30}")
    figures = {}
    for traced in (False, True):
        first = statistics.median(r[0] for r in results[traced])
        per_second = statistics.median(r[1] for r in results[traced])
        figures[traced] = (first, per_second)
        print(f"{'on' if traced else 'off':<10}{first:>20.2f}{per_second:>30.0f}")
    print(
        f"tracing adds {figures[True][0] - figures[False][0]:+.2f} ms to TTFT and keeps "
        f"{figures[True][1] / figures[False][1]:.2f}x the completions per second"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
