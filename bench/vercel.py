"""Vercel AI SDK streams: what the translation costs.

1. In one process, no network: how many `thread.message.delta` events per second the relay turns
   into UI message stream chunks (parse the stored event, translate, encode as SSE), against
   encoding the same events as OpenAI's Assistants SSE (what /v1/threads/runs streams).
2. Through a running ossabus (fake upstream, instant answers of --words tokens): a streamed run
   read as OpenAI SSE (`POST /v1/threads/runs`, stream) and as a UI message stream (`POST /api/chat`),
   alternately; time to first delta, and total time per delta.

    python bench/vercel.py [--deltas 200000] [--runs 40] [--words 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import start_fake, start_ossabus, stop

from ossabus.contracts.bus import RunEvent
from ossabus.relay.vercel.streams import Encoder
from ossabus.relay.vercel.ui_chunks import UIChunks


def stored_deltas(count: int) -> list[bytes]:
    """Delta events as they sit in the events stream (the relay parses each one)."""
    out = []
    for i in range(count):
        data = {
            "id": "msg_bench",
            "object": "thread.message.delta",
            "delta": {"content": [{"index": 0, "type": "text", "text": {"value": f" w{i}", "annotations": []}}]},
        }
        out.append(
            RunEvent(event="thread.message.delta", thread_id="t", run_id="r", data=data).model_dump_json().encode()
        )
    return out


def translation_rates(count: int) -> tuple[float, float]:
    from fastapi.sse import format_sse_event

    events = stored_deltas(count)
    start = time.perf_counter()
    for raw in events:
        event = RunEvent.model_validate_json(raw)
        format_sse_event(event=event.event, data_str=json.dumps(event.data), id="1")
    openai_rate = count / (time.perf_counter() - start)
    translator, encode = UIChunks(message_id="r"), Encoder("ui")
    start = time.perf_counter()
    for raw in events:
        event = RunEvent.model_validate_json(raw)
        encode(translator.feed(event.event, event.data))
    ui_rate = count / (time.perf_counter() - start)
    return openai_rate, ui_rate


def timed_stream(client: httpx.Client, url: str, body: dict, marker: str) -> tuple[float, float, int]:
    start = time.perf_counter()
    first, deltas = None, 0
    with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith(marker):
                deltas += 1
                first = first or time.perf_counter()
    return (first or start) - start, time.perf_counter() - start, deltas


def end_to_end(runs: int, words: int) -> None:
    fake, fake_url = start_fake()
    env = {"OPENAI_BASE_URL": f"{fake_url}/v1", "OPENAI_API_KEY": "sk-bench"}
    agents = Path(__file__).resolve().parents[1] / "tests" / "agents"
    with tempfile.TemporaryDirectory() as tmp:
        procs, base, _ = start_ossabus(env, Path(tmp), 0, manifests=agents)
        try:
            prompt = f"[[long:{words}]]"
            openai_body = {
                "assistant_id": "asst_echoXagent",
                "stream": True,
                "thread": {"messages": [{"role": "user", "content": prompt}]},
            }
            figures: dict[str, list[tuple[float, float, int]]] = {"openai": [], "ui": []}
            with httpx.Client(base_url=base, timeout=60) as client:
                for i in range(runs + 5):
                    ui_body = {
                        "id": f"bench-{i}",
                        "agent": "echo-agent",
                        "trigger": "submit-message",
                        "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": prompt}]}],
                    }
                    a = timed_stream(client, "/v1/threads/runs", openai_body, "event: thread.message.delta")
                    b = timed_stream(client, "/api/chat", ui_body, 'data: {"type":"text-delta"')
                    if i >= 5:  # warm-up
                        figures["openai"].append(a)
                        figures["ui"].append(b)
        finally:
            stop(procs)
            fake.terminate()
    print(f"\nstreamed runs of {words} tokens through ossabus, {runs} each, alternating (medians):")
    print(f"{'path':<22}{'first delta ms':>16}{'total ms':>10}{'per delta us':>14}")
    per_delta = {}
    for name, label in (("openai", "OpenAI SSE"), ("ui", "UI message stream")):
        rows = figures[name]
        first = statistics.median(r[0] for r in rows) * 1000
        total = statistics.median(r[1] for r in rows) * 1000
        per_delta[name] = statistics.median(r[1] / max(r[2], 1) for r in rows) * 1e6
        print(f"{label:<22}{first:>16.2f}{total:>10.1f}{per_delta[name]:>14.1f}")
    print(f"added per delta by the UI message stream: {per_delta['ui'] - per_delta['openai']:+.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deltas", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--words", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    rates = [translation_rates(args.deltas) for _ in range(3)]
    openai_rate = statistics.median(r[0] for r in rates)
    ui_rate = statistics.median(r[1] for r in rates)
    print(f"one process, {args.deltas} stored delta events, median of 3:")
    print(f"  OpenAI SSE encoding:        {openai_rate:>10,.0f} deltas/s")
    print(f"  UI message stream chunks:   {ui_rate:>10,.0f} deltas/s ({ui_rate / openai_rate:.2f}x)")
    end_to_end(args.runs, args.words)


if __name__ == "__main__":
    main()
