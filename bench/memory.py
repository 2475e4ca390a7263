"""Resident memory: an idle `ossabus up`, and what 1,000 open streams add; the LiteLLM proxy alike.

Both are started against the fake upstream; after a quiet moment their resident memory (with every
child process: ossabus's embedded nats-server) is read from /proc. Then 1,000 streamed chat
completions are opened at once against a model answer that trickles (a token every 2 s), so every
stream stays open, and memory is read again while all of them are.

    python bench/memory.py [--streams 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import rss_mib, start_fake, start_ossabus, stop
from litellm_proxy import MASTER_KEY, start_proxy


async def hold_streams(base: str, model: str, key: str | None, count: int, settle_s: float) -> None:
    """Open `count` streams, wait until each has its first token, read memory, then let them go."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": "hold [[long:30]] [[delay:2000]]"}],
    }
    opened = 0
    all_open = asyncio.Event()
    release = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def one():
            nonlocal opened
            async with session.post(f"{base}/chat/completions", json=body, headers=headers) as response:
                if response.status != 200:
                    raise SystemExit(f"HTTP {response.status}: {(await response.read())[:200]!r}")
                async for line in response.content:
                    if b'"content"' in line:
                        opened += 1
                        if opened == count:
                            all_open.set()
                        break
                await release.wait()

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        started = time.monotonic()
        await asyncio.wait_for(all_open.wait(), 300)
        print(f"  {count} streams open after {time.monotonic() - started:.1f} s", flush=True)
        await asyncio.sleep(settle_s)
        release.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def measure(name: str, pid: int, base: str, model: str, key: str | None, streams: int) -> tuple[float, float]:
    time.sleep(5)
    idle = rss_mib(pid)
    print(f"{name}: idle {idle:.0f} MiB", flush=True)
    peak = {"value": 0.0}

    async def run():
        task = asyncio.create_task(hold_streams(base, model, key, streams, 3))
        while not task.done():
            peak["value"] = max(peak["value"], rss_mib(pid))
            await asyncio.sleep(0.5)
        await task

    asyncio.run(run())
    return idle, peak["value"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    args = parser.parse_args()
    fake, upstream = start_fake()
    env = {"OPENAI_BASE_URL": f"{upstream}/v1", "OPENAI_API_KEY": "sk-bench", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    procs = [fake]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            ours, base, _ = start_ossabus(
                {**os.environ, **env}, Path(tmp), 0, extra=("--max-runs", str(args.streams + 64))
            )
            procs += ours
            results["ossabus up"] = measure(
                "ossabus up", ours[0].pid, f"{base}/v1", "openai/fake-model", None, args.streams
            )
            stop(ours)
            proxy, proxy_base = start_proxy(upstream, Path(tmp))
            procs.append(proxy)
            results["LiteLLM proxy"] = measure(
                "LiteLLM proxy", proxy.pid, f"{proxy_base}/v1", "fake-model", MASTER_KEY, args.streams
            )
        finally:
            stop(procs)
    print(f"\n{'resident memory, MiB':<24}{'idle':>10}{f'{args.streams} streams open':>22}{'per 1,000 streams':>20}")
    for name, (idle, peak) in results.items():
        print(f"{name:<24}{idle:>10.0f}{peak:>22.0f}{(peak - idle) * 1000 / args.streams:>20.0f}")


if __name__ == "__main__":
    main()
