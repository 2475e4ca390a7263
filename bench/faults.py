"""Faults, measured: what a killed executor or a NATS outage costs in model calls, duplicates and stuck runs.

Two executor processes share 30 runs whose answers stream slowly from the fake upstream
(tests/fake_llm.py); then, once every run is streaming, one of:
  - kill9:      SIGKILL of one executor;
  - outage<S>:  nats-server stopped for S seconds (e.g. outage45, outage180), then started again.
It prints, per scenario: runs completed, runs stuck (not ended within the deadline), threads with
more than one assistant answer, upstream model calls (the ideal is one per run), and the time taken.

    python bench/faults.py kill9 outage45 outage180 [--runs 30] [--stream-s 6] [--ack-wait 30]
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, free_port, start_fake, stop, wait_ready

from ossabus.runtime.nats_server import EmbeddedNats

TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete"}
AGENT = (
    "apiVersion: ossa/v0.3.4\nkind: Agent\nmetadata: {name: slow-agent}\n"
    "spec:\n  prompts: {system: You answer slowly.}\n  llm: {provider: openai, model: fake-model}\n"
)


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ossabus.cli", *cmd], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def scenario(name: str, runs: int, stream_s: float, ack_wait: float, work: Path) -> dict[str, object]:
    fake, fake_url = start_fake()
    server = EmbeddedNats(work / "nats", port=free_port())
    url = server.start()
    (work / "agents").mkdir()
    (work / "agents" / "slow-agent.ossa.yaml").write_text(AGENT)
    env = {
        **os.environ,
        "OPENAI_BASE_URL": f"{fake_url}/v1",
        "OPENAI_API_KEY": "sk-bench",
        "OSSABUS_ACK_WAIT_S": str(ack_wait),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    port = free_port()
    edge_args = ["up", "--nats-url", url, "--no-bundled-manifests", "--manifests", str(work / "agents")]
    edge = start([*edge_args, "--without", "executor", "--port", str(port)], env, work / "edge.log")
    base = f"http://127.0.0.1:{port}"
    executors = []
    try:
        wait_ready(base, work / "edge.log")
        for i in range(2):
            executors.append(start(["serve", "executor", "--nats-url", url], env, work / f"executor-{i}.log"))
        for i in range(2):
            while "executor service started" not in (work / f"executor-{i}.log").read_text():
                time.sleep(0.1)
        words = 40
        text = f"[[long:{words}]] [[delay:{int(stream_s * 1000 / words)}]]"
        client = httpx.Client(base_url=base, timeout=30)
        created = []
        for i in range(runs):
            body = {
                "assistant_id": "asst_slowXagent",
                "thread": {"messages": [{"role": "user", "content": f"{i} {text}"}]},
            }
            created.append(client.post("/v1/threads/runs", json=body).json())
        time.sleep(min(2.0, stream_s / 3))  # every run streams now
        started = time.monotonic()
        if name == "kill9":
            executors[0].send_signal(signal.SIGKILL)
        elif name.startswith("outage"):
            server.stop()
            time.sleep(float(name.removeprefix("outage")))
            server.start()
        else:
            raise SystemExit(f"unknown scenario {name}")
        pending = {r["id"]: r["thread_id"] for r in created}
        statuses: dict[str, str] = {}
        deadline = time.monotonic() + 600
        while pending and time.monotonic() < deadline:
            for run_id, thread_id in list(pending.items()):
                try:
                    status = client.get(f"/v1/threads/{thread_id}/runs/{run_id}").json().get("status")
                except (httpx.HTTPError, ValueError):
                    continue
                if status in TERMINAL:
                    statuses[run_id] = status
                    del pending[run_id]
            time.sleep(0.5)
        doubled = 0
        for r in created:
            messages = client.get(f"/v1/threads/{r['thread_id']}/messages").json()["data"]
            if collections.Counter(m["role"] for m in messages)["assistant"] > 1:
                doubled += 1
        calls = len(httpx.get(f"{fake_url}/_requests").json())
        return {
            "scenario": name,
            "completed": sum(1 for s in statuses.values() if s == "completed"),
            "stuck": len(pending),
            "doubled": doubled,
            "upstream_calls": calls,
            "runs": runs,
            "recovered_s": round(time.monotonic() - started, 1),
        }
    finally:
        for process in [*executors, edge]:
            if process.poll() is None:
                process.terminate()
        for process in [*executors, edge]:
            process.wait(30)
        server.stop()
        stop([fake])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="+")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--stream-s", type=float, default=6.0)
    parser.add_argument("--ack-wait", type=float, default=30.0)
    args = parser.parse_args()
    print(f"{'scenario':<12} {'completed':>9} {'stuck':>5} {'doubled':>7} {'upstream calls':>14} {'recovered s':>11}")
    for name in args.scenarios:
        with tempfile.TemporaryDirectory(prefix="ossabus-faults-") as tmp:
            row = scenario(name, args.runs, args.stream_s, args.ack_wait, Path(tmp))
        print(
            f"{row['scenario']:<12} {row['completed']:>6}/{row['runs']:<2} {row['stuck']:>5} {row['doubled']:>7} "
            f"{row['upstream_calls']:>9} ({row['upstream_calls'] / row['runs']:.2f}/run) {row['recovered_s']:>8}"
        )
    print(f"ideal: every run completed, none stuck or doubled, 1.00 upstream call per run ({ROOT.name})")


if __name__ == "__main__":
    main()
