"""Time to the first output-text delta through `/v1/responses` versus `/v1/chat/completions`, on
the same agent, the same fake upstream (tests/fake_llm.py, instant answers), alternating rounds.

A response is a run: it goes through the work queue, the run record, the event stream and the
translation to Responses events; a chat completion is one request/reply to an executor. This
measures what that costs before the first token (the price of crash safety, background mode and
stored conversations), and streamed tokens/s of each.

    python bench/responses.py [--requests 100] [--rounds 3] [--words 50]
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

AGENT = """\
apiVersion: ossa/v0.5
kind: Agent
metadata: {name: bench-agent}
spec:
  instructions: You answer.
  model: {provider: openai, model: fake-model}
"""


async def first_delta(client: httpx.AsyncClient, path: str, body: dict, marker: str) -> tuple[float, float, int]:
    start = time.perf_counter()
    first, tokens = None, 0
    async with client.stream("POST", path, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: ") and marker in line:
                tokens += 1
                first = first or time.perf_counter()
    return (first or time.perf_counter()) - start, time.perf_counter() - start, tokens


def chat_call(client, prompt):
    body = {"model": "bench-agent", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    return first_delta(client, "/v1/chat/completions", body, '"content"')


def responses_call(client, prompt):
    body = {"model": "bench-agent", "stream": True, "input": prompt, "store": False}
    return first_delta(client, "/v1/responses", body, '"response.output_text.delta"')


async def measure(call, total: int, concurrency: int) -> list[tuple[float, float, int]]:
    semaphore = asyncio.Semaphore(concurrency)
    results = []

    async def one():
        async with semaphore:
            results.append(await call())

    await asyncio.gather(*(one() for _ in range(total)))
    return results


async def main(args) -> None:
    fake, fake_url = start_fake()
    env = {"OPENAI_BASE_URL": f"{fake_url}/v1", "OPENAI_API_KEY": "sk-bench"}
    prompt = f"bench [[long:{args.words}]]"
    with tempfile.TemporaryDirectory() as tmp:
        manifests = Path(tmp) / "manifests"
        manifests.mkdir()
        (manifests / "bench-agent.ossa.yaml").write_text(AGENT)
        procs, base, _ = start_ossabus({**os.environ, **env}, Path(tmp), 0, manifests)
        try:
            limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
            async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
                for _ in range(10):  # warm-up both paths
                    await chat_call(client, prompt)
                    await responses_call(client, prompt)
                for concurrency in (1, 16):
                    seen: dict[str, list] = {"chat": [], "responses": []}
                    for _ in range(args.rounds):  # alternate, so drift hits both alike
                        seen["chat"] += await measure(lambda: chat_call(client, prompt), args.requests, concurrency)
                        seen["responses"] += await measure(
                            lambda: responses_call(client, prompt), args.requests, concurrency
                        )
                    ttft = {k: statistics.median(r[0] * 1000 for r in v) for k, v in seen.items()}
                    rates = {k: statistics.median(r[2] / r[1] for r in v if r[1] > 0) for k, v in seen.items()}
                    print(
                        f"{concurrency:>2} concurrent: first delta median chat {ttft['chat']:.2f} ms, "
                        f"responses {ttft['responses']:.2f} ms (+{ttft['responses'] - ttft['chat']:.2f} ms, "
                        f"{ttft['responses'] / ttft['chat']:.2f}x); tokens/s per stream chat {rates['chat']:.0f}, "
                        f"responses {rates['responses']:.0f}"
                    )
        finally:
            stop(procs)
            fake.terminate()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--words", type=int, default=50)
    asyncio.run(main(parser.parse_args()))
