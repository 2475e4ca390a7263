"""Chat completions through ossabus versus the same upstream called directly through litellm.

Measures, with the fake OpenAI-compatible upstream from tests/fake_llm.py (instant answers):
  - time to first token (TTFT) and tokens/s of streamed completions, at 1 and 32 concurrent streams;
  - non-streaming chat completions per second.
Everything runs on this machine (the upstream, nats-server, ossabus and this load generator share
its cores), so compare the two columns of one run rather than figures across machines.

    python bench/chat.py [--requests 200] [--words 50] [--seconds 10] [--executors N]

With --executors N the executor runs as N separate processes (`ossabus up --without executor` plus
N x `ossabus serve executor`); by default everything runs in the one `ossabus up` process.
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


async def stream_via_litellm(prompt: str) -> tuple[float, float, int]:
    import litellm

    start = time.perf_counter()
    first, tokens = None, 0
    response = await litellm.acompletion(
        model="openai/fake-model", messages=[{"role": "user", "content": prompt}], stream=True
    )
    async for chunk in response:
        if chunk.choices and chunk.choices[0].delta.content:
            tokens += 1
            first = first or time.perf_counter()
    return (first or time.perf_counter()) - start, time.perf_counter() - start, tokens


async def stream_via_ossabus(client: httpx.AsyncClient, prompt: str) -> tuple[float, float, int]:
    start = time.perf_counter()
    first, tokens = None, 0
    body = {"model": "openai/fake-model", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"content"' in line:
                tokens += 1
                first = first or time.perf_counter()
    return (first or time.perf_counter()) - start, time.perf_counter() - start, tokens


async def streams(call, total: int, concurrency: int) -> dict[str, float]:
    semaphore = asyncio.Semaphore(concurrency)
    results: list[tuple[float, float, int]] = []

    async def one():
        async with semaphore:
            results.append(await call())

    await asyncio.gather(*(one() for _ in range(total)))
    ttft = [r[0] * 1000 for r in results]
    rates = [r[2] / r[1] for r in results if r[1] > 0]
    return {
        "ttft_ms_median": statistics.median(ttft),
        "ttft_ms_p90": statistics.quantiles(ttft, n=10)[-1],
        "tokens_per_s_median": statistics.median(rates),
    }


async def rate(call, seconds: float, concurrency: int) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker():
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def main(args) -> None:
    fake, fake_url = start_fake()
    env = {**os.environ, "OPENAI_BASE_URL": f"{fake_url}/v1", "OPENAI_API_KEY": "sk-bench"}
    os.environ.update({"OPENAI_BASE_URL": f"{fake_url}/v1", "OPENAI_API_KEY": "sk-bench"})
    prompt = f"bench [[long:{args.words}]]"
    with tempfile.TemporaryDirectory() as tmp:
        procs, base, _ = start_ossabus(env, Path(tmp), args.executors)
        try:
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
                import litellm  # noqa: F401 - warm the import before timing

                for _ in range(20):  # warm-up both paths
                    await stream_via_litellm(prompt)
                    await stream_via_ossabus(client, prompt)
                print(f"streamed chat completions, {args.words} tokens each, {args.requests} per row")
                print(f"{'path':<10}{'streams':>8}{'TTFT median ms':>16}{'TTFT p90 ms':>13}{'tokens/s median':>17}")
                figures = {}
                for concurrency in (1, 32):
                    for name, call in (
                        ("litellm", lambda: stream_via_litellm(prompt)),
                        ("ossabus", lambda: stream_via_ossabus(client, prompt)),
                    ):
                        r = await streams(call, args.requests, concurrency)
                        figures[(name, concurrency)] = r
                        print(
                            f"{name:<10}{concurrency:>8}{r['ttft_ms_median']:>16.2f}{r['ttft_ms_p90']:>13.2f}"
                            f"{r['tokens_per_s_median']:>17.0f}"
                        )
                for concurrency in (1, 32):
                    added = (
                        figures[("ossabus", concurrency)]["ttft_ms_median"]
                        - figures[("litellm", concurrency)]["ttft_ms_median"]
                    )
                    print(f"added TTFT at {concurrency} stream(s): {added:+.2f} ms (median vs median)")

                import litellm as ll

                async def direct():
                    await ll.acompletion(model="openai/fake-model", messages=[{"role": "user", "content": "hi"}])

                async def through():
                    r = await client.post(
                        "/v1/chat/completions",
                        json={"model": "openai/fake-model", "messages": [{"role": "user", "content": "hi"}]},
                    )
                    r.raise_for_status()

                direct_rate = await rate(direct, args.seconds, 32)
                through_rate = await rate(through, args.seconds, 32)
                print(
                    f"non-streaming chat completions/s, 32 concurrent: litellm direct {direct_rate:.0f}, "
                    f"through ossabus {through_rate:.0f} ({through_rate / direct_rate:.2f}x)"
                )
        finally:
            stop(procs)
            fake.terminate()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--words", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--executors",
        type=int,
        default=0,
        help="run the executor as N `ossabus serve executor` processes instead of inside `ossabus up`",
    )
    asyncio.run(main(parser.parse_args()))
