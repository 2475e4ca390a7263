"""What a workflow step costs: a step against the run it wraps, and a 100-step pipeline end to end.

With the fake upstream answering at once, side by side in one run (alternating rounds, medians):

- one agent run asked by a client (`ossa.ask.<agent>`, request/reply): what a step wraps;
- a one-step workflow, start to end (`ossa.ask.workflow.<name>`): the run plus the workflow around it;
- a 100-step sequential workflow, and the same 100 asks made one after another by a client that
  orchestrates them itself (what users would otherwise write).

    python bench/workflows.py [--rounds 5] [--steps 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nats
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, start_fake, start_ossabus, stop

from ossabus.contracts import subjects

AGENTS = ROOT / "tests" / "agents"


def pipeline(name: str, steps: int) -> str:
    spec = {
        "steps": [
            {
                "id": f"s{i}",
                "kind": "Agent",
                "ref": "echo-agent",
                "input": f"step {i}" if i == 0 else f"${{{{ steps.s{i - 1}.output }}}}",
            }
            for i in range(steps)
        ]
    }
    return yaml.safe_dump({"apiVersion": "ossa/v0.4.7", "kind": "Workflow", "metadata": {"name": name}, "spec": spec})


def register(base: str, text: str) -> None:
    name = yaml.safe_load(text)["metadata"]["name"]
    response = httpx.put(
        f"{base}/v1/ossa/manifests/{name}", content=text, headers={"content-type": "application/yaml"}, timeout=30
    )
    response.raise_for_status()


async def ask(nc, agent: str, text: str) -> str:
    reply = json.loads((await nc.request(subjects.ask(agent), json.dumps({"input": text}).encode(), timeout=120)).data)
    assert reply["ok"], reply
    return reply["result"]["output_text"]


async def workflow(nc, name: str) -> dict:
    reply = json.loads((await nc.request(subjects.workflow_ask(name), b"{}", timeout=600)).data)
    assert reply["ok"], reply
    assert reply["result"]["status"] == "completed", reply
    return reply["result"]


async def timed(work) -> float:
    started = time.perf_counter()
    await work
    return (time.perf_counter() - started) * 1000


async def measure(nats_url: str, rounds: int, steps: int) -> dict[str, list[float]]:
    nc = await nats.connect(nats_url)
    figures: dict[str, list[float]] = {"ask": [], "one": [], "pipeline": [], "client": []}

    async def by_hand() -> None:
        text = "step 0"
        for _ in range(steps):
            text = await ask(nc, "echo-agent", text)

    try:
        await ask(nc, "echo-agent", "warm up")
        await workflow(nc, "one-step")
        for _ in range(rounds):
            for _ in range(5):
                figures["ask"].append(await timed(ask(nc, "echo-agent", "hello")))
                figures["one"].append(await timed(workflow(nc, "one-step")))
            figures["pipeline"].append(await timed(workflow(nc, "pipeline")))
            figures["client"].append(await timed(by_hand()))
    finally:
        await nc.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    fake, fake_url = start_fake()
    env = {
        "OPENAI_BASE_URL": f"{fake_url}/v1",
        "OPENAI_API_KEY": "sk-bench",
        "FAKE_LLM_ROOT": fake_url,
        "OSSABUS_EGRESS_ALLOW": "localhost",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            procs, base, nats_url = start_ossabus(env, Path(tmp), 0, AGENTS)
            try:
                register(base, pipeline("one-step", 1))
                register(base, pipeline("pipeline", args.steps))
                figures = asyncio.run(measure(nats_url, args.rounds, args.steps))
            finally:
                stop(procs)
    finally:
        fake.terminate()
    ask_ms, one_ms = statistics.median(figures["ask"]), statistics.median(figures["one"])
    pipeline_ms, client_ms = statistics.median(figures["pipeline"]), statistics.median(figures["client"])
    print(f"instant upstream, medians of {args.rounds} rounds")
    print(f"{'one agent run (ossa.ask)':44s} {ask_ms:8.1f} ms")
    print(f"{'one-step workflow (ossa.ask.workflow)':44s} {one_ms:8.1f} ms   overhead {one_ms - ask_ms:+.1f} ms")
    print(f"{f'{args.steps}-step workflow':44s} {pipeline_ms:8.1f} ms   {pipeline_ms / args.steps:.1f} ms per step")
    by_hand = f"{args.steps} asks by a client, one after another"
    print(f"{by_hand:44s} {client_ms:8.1f} ms   {client_ms / args.steps:.1f} ms per step")
    overhead = (pipeline_ms - client_ms) / args.steps
    print(f"{'overhead per workflow step':44s} {overhead:+8.1f} ms   ratio {pipeline_ms / client_ms:.2f}x")


if __name__ == "__main__":
    main()
