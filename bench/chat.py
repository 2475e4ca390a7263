"""Chat completions through ossabus, through the LiteLLM proxy, and straight to the upstream, in one run.

The same fake OpenAI-compatible upstream (tests/fake_llm.py, instant answers) serves all three; the
LiteLLM proxy is what a user would run instead (its own virtual environment, one worker, a master
key; see litellm_proxy.py), and ossabus checks an API key too. Rounds alternate between the three so
that a slow moment of this machine hits all of them alike, and the figures are the medians over rounds:

  - non-streaming chat completions per second at 16 and 32 concurrent requests;
  - time to first token (TTFT) at 1 and 32 concurrent streams, and what each adds over the upstream;
  - streamed tokens per second through one process (16 concurrent streams of 50 tokens).

Everything shares this machine's cores (the upstream, nats-server, ossabus or the proxy, and this
load generator, which uses aiohttp to stay light), so compare the columns of one run, not runs on
different machines.

    python bench/chat.py [--rounds 3] [--seconds 4] [--ttft-requests 100] [--words 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import start_fake, start_ossabus, stop
from litellm_proxy import MASTER_KEY, start_proxy

OSSABUS_KEY = "sk-ossabus-bench"


@dataclass
class Target:
    name: str
    base: str  # ends in /v1
    model: str
    key: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


async def complete(session: aiohttp.ClientSession, target: Target) -> None:
    body = {"model": target.model, "messages": [{"role": "user", "content": "hi"}]}
    async with session.post(f"{target.base}/chat/completions", json=body, headers=target.headers) as response:
        data = await response.read()
        if response.status != 200:
            raise SystemExit(f"{target.name}: HTTP {response.status}: {data[:300]!r}")


async def stream(session: aiohttp.ClientSession, target: Target, prompt: str) -> tuple[float, int]:
    """(seconds to the first content token, words of content received)."""
    body = {"model": target.model, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    start = time.perf_counter()
    first = None
    text: list[str] = []
    async with session.post(f"{target.base}/chat/completions", json=body, headers=target.headers) as response:
        if response.status != 200:
            raise SystemExit(f"{target.name}: HTTP {response.status}: {(await response.read())[:300]!r}")
        async for line in response.content:
            if not line.startswith(b"data: {"):
                continue
            choices = json.loads(line[6:]).get("choices") or []
            content = choices[0].get("delta", {}).get("content") if choices else None
            if content:
                first = first or time.perf_counter()
                text.append(content)
    return (first or time.perf_counter()) - start, len("".join(text).split())


async def rate(session, target: Target, concurrency: int, seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal done
        while time.perf_counter() < deadline:
            await complete(session, target)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def ttft_ms(session, target: Target, concurrency: int, requests: int, prompt: str) -> float:
    semaphore = asyncio.Semaphore(concurrency)
    found: list[float] = []

    async def one():
        async with semaphore:
            found.append((await stream(session, target, prompt))[0] * 1000)

    await asyncio.gather(*(one() for _ in range(requests)))
    return statistics.median(found)


async def tokens_per_s(session, target: Target, concurrency: int, seconds: float, words: int) -> float:
    tokens = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal tokens
        while time.perf_counter() < deadline:
            _, got = await stream(session, target, f"bench [[long:{words}]]")
            if got != words:
                raise SystemExit(f"{target.name}: a stream of {words} tokens brought {got}")
            tokens += got

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tokens / (time.perf_counter() - start)


FIGURES = (
    "completions/s, 16 concurrent",
    "completions/s, 32 concurrent",
    "TTFT ms, 1 stream",
    "TTFT ms, 32 streams",
    "streamed tokens/s, 16 streams",
)


async def measure(targets: list[Target], args) -> dict[tuple[str, str], list[float]]:
    figures: dict[tuple[str, str], list[float]] = {}
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=120)
    prompt = f"bench [[long:{args.words}]]"
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for target in targets:  # warm-up: connections, caches, imports
            await asyncio.gather(*(complete(session, target) for _ in range(32)))
            await asyncio.gather(*(stream(session, target, prompt) for _ in range(32)))
        for round_number in range(args.rounds):
            order = targets[round_number % len(targets) :] + targets[: round_number % len(targets)]
            for target in order:
                values = (
                    await rate(session, target, 16, args.seconds),
                    await rate(session, target, 32, args.seconds),
                    await ttft_ms(session, target, 1, args.ttft_requests, prompt),
                    await ttft_ms(session, target, 32, args.ttft_requests * 2, prompt),
                    await tokens_per_s(session, target, 16, args.seconds, args.words),
                )
                for figure, value in zip(FIGURES, values, strict=True):
                    figures.setdefault((target.name, figure), []).append(value)
            print(f"round {round_number + 1}/{args.rounds} done", flush=True)
    return figures


def report(figures: dict[tuple[str, str], list[float]], names: list[str]) -> None:
    med = {key: statistics.median(values) for key, values in figures.items()}
    print(f"\n{'median over rounds':<32}" + "".join(f"{n:>16}" for n in names) + f"{'ossabus/proxy':>16}")
    for figure in FIGURES:
        cells = "".join(f"{med[(n, figure)]:>16.1f}" for n in names)
        print(f"{figure:<32}{cells}{med[('ossabus', figure)] / med[('litellm-proxy', figure)]:>15.2f}x")
    for streams in ("1 stream", "32 streams"):
        figure = f"TTFT ms, {streams}"
        base = med[("upstream", figure)]
        added = "".join(f"{med[(n, figure)] - base:>+16.2f}" for n in names)
        print(f"{'added ' + figure:<32}{added}")
    print(
        "\naims: ossabus >= 3x the proxy's completions/s at 16 and 32; added TTFT <= 3 ms at 1 stream and below "
        "the proxy's at 32; >= 20,000 streamed tokens/s through one relay"
    )


async def main(args) -> None:
    fake, upstream = start_fake()
    env = {"OPENAI_BASE_URL": f"{upstream}/v1", "OPENAI_API_KEY": "sk-bench", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    procs = [fake]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            proxy, proxy_base = start_proxy(upstream, Path(tmp))
            procs.append(proxy)
            keyed = {**os.environ, **env, "OSSABUS_API_KEYS": OSSABUS_KEY}  # a key, as the proxy has its master key
            ossabus_procs, base, _ = start_ossabus(keyed, Path(tmp), args.executors)
            procs += ossabus_procs
            targets = [
                Target("upstream", f"{upstream}/v1", "fake-model"),
                Target("litellm-proxy", f"{proxy_base}/v1", "fake-model", MASTER_KEY),
                Target("ossabus", f"{base}/v1", "openai/fake-model", OSSABUS_KEY),
            ]
            figures = await measure(targets, args)
            report(figures, [t.name for t in targets])
        finally:
            stop(procs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--ttft-requests", type=int, default=100)
    parser.add_argument("--words", type=int, default=50)
    parser.add_argument(
        "--executors",
        type=int,
        default=0,
        help="run the executor as N `ossabus serve executor` processes instead of inside `ossabus up`",
    )
    asyncio.run(main(parser.parse_args()))
