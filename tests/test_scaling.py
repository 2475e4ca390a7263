"""Executors as separate processes: sharing work, and losing one to kill -9 in the middle of runs."""

import asyncio
import collections
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import nats
import pytest

from ossabus.client import OssabusClient

from conftest import free_port, llm_env, ossabus_command, process_env, rendered_agents, reset_jetstream, start_stack


class Cluster:
    """`ossabus up --without executor` plus executor processes, all on the test NATS."""

    def __init__(self, nats_url: str, env: dict[str, str], tmp: Path, edge_args: list[str] | None = None):
        self.nats_url, self.env, self.tmp = nats_url, env, tmp
        self.executors: list[tuple[subprocess.Popen, Path]] = []
        agents = str(rendered_agents(env["FAKE_LLM_ROOT"]))
        self.edge = start_stack(
            ["up", "--nats-url", nats_url, "--manifests", agents, "--without", "executor", *(edge_args or [])],
            tmp / "edge.log",
            free_port(),
            env=env,
        )

    def add_executor(self, max_runs: int) -> subprocess.Popen:
        return self.add_executors(1, max_runs)[0]

    def add_executors(self, count: int, max_runs: int) -> list[subprocess.Popen]:
        """`count` executor processes, started side by side (each import costs seconds on a loaded
        machine) and returned once every one says it has started."""
        started = []
        for _ in range(count):
            log = self.tmp / f"executor-{len(self.executors)}.log"
            process = subprocess.Popen(
                ossabus_command("serve", "executor", "--nats-url", self.nats_url, "--max-runs", str(max_runs)),
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
                env=process_env(self.env),
            )
            self.executors.append((process, log))
            started.append((process, log))
        deadline = time.monotonic() + 30 + 10 * count
        for process, log in started:
            while "executor service started" not in log.read_text():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        return [process for process, _ in started]

    def completed_by(self) -> list[int]:
        """How many runs each executor finished, from its log."""
        return [len(re.findall(r"run \S+ completed", log.read_text())) for _, log in self.executors]

    def stop(self) -> None:
        for process, _ in self.executors:
            if process.poll() is None:
                process.terminate()
        for process, _ in self.executors:
            process.wait(30)
        assert self.edge.stop() == 0, self.edge.logs()


@pytest.fixture
def cluster(nats_url, fake_llm, tmp_path):
    asyncio.run(reset_jetstream(nats_url))
    # 5 s instead of the default 30 s, so a killed executor's runs move on quickly; much less than
    # that and a CPU-saturated 2-core machine stalls event loops past the lease expiry.
    env = {**llm_env(fake_llm), "OSSABUS_ACK_WAIT_S": "5"}
    running = Cluster(nats_url, env, tmp_path)
    yield running
    running.stop()


async def submit_all(nats_url: str, texts: list[str]):
    async with await OssabusClient.connect(nats_url, timeout=120) as client:
        tasks = [await client.submit("echo-agent", text) for text in texts]
        return tasks, await asyncio.gather(*(t.result() for t in tasks))


def test_two_executor_processes_share_three_hundred_tasks_exactly_once(cluster, nats_url):
    # at the executors' default concurrency and a 200 ms upstream: each run lists its thread and steps
    # several times, and listings that each created a consumer hit the stream's consumer limit here
    cluster.add_executors(2, max_runs=64)
    texts = [f"task number {i} [[slow:0.2]]" for i in range(300)]
    tasks, results = asyncio.run(submit_all(nats_url, texts))
    wrong = [
        (t, r)
        for t, r, text in zip(tasks, results, texts, strict=True)
        if (r.status, r.output_text) != ("completed", f"Echo: {text.removesuffix(' [[slow:0.2]]')}")
    ]
    details = []
    for t, r in wrong[:3]:
        messages = httpx.get(f"{cluster.edge.base_url}/v1/threads/{t.thread_id}/messages").json()["data"]
        shown = [(m["role"], m["status"], m["content"][0]["text"]["value"] if m["content"] else None) for m in messages]
        details.append((r.status, r.output_text, r.usage, shown))
    assert not wrong, details
    shares = cluster.completed_by()
    assert sum(shares) == 300, shares
    assert all(share > 0 for share in shares), f"an executor took no part: {shares}"
    sample = tasks[::20]
    for task in sample:
        messages = httpx.get(f"{cluster.edge.base_url}/v1/threads/{task.thread_id}/messages").json()["data"]
        assert [m["role"] for m in messages] == ["assistant", "user"]


def test_kill_9_of_an_executor_loses_no_run_and_writes_no_message_twice(cluster, nats_url):
    victim, _ = cluster.add_executors(2, max_runs=4)
    texts = [f"slow {i} [[long:40]] [[delay:50]]" for i in range(10)]  # 40 words, ~2 s of streaming each

    async def scenario():
        async with await OssabusClient.connect(nats_url, timeout=120) as client:
            tasks = [await client.submit("echo-agent", text) for text in texts]
            nc = await nats.connect(nats_url)
            streaming = await nc.subscribe("ossa.events.*.*.thread.message.delta")
            await streaming.next_msg(timeout=30)  # runs are mid-stream now
            await asyncio.sleep(0.5)
            victim.send_signal(signal.SIGKILL)
            await nc.close()
            killed_at = time.monotonic()
            results = await asyncio.gather(*(t.result() for t in tasks))
            return tasks, results, time.monotonic() - killed_at

    tasks, results, recovery_s = asyncio.run(scenario())
    assert victim.wait(5) == -signal.SIGKILL
    assert [r.status for r in results] == ["completed"] * 10
    for task, result in zip(tasks, results, strict=True):
        assert result.output_text == " ".join(f"w{i}" for i in range(40))
        messages = httpx.get(f"{cluster.edge.base_url}/v1/threads/{task.thread_id}/messages").json()["data"]
        assert collections.Counter(m["role"] for m in messages) == {"user": 1, "assistant": 1}, messages
        runs = httpx.get(f"{cluster.edge.base_url}/v1/threads/{task.thread_id}/runs").json()["data"]
        assert [r["status"] for r in runs] == ["completed"]
    survivor_log = cluster.executors[1][1].read_text()
    assert cluster.completed_by()[1] >= 1
    assert recovery_s < 60, f"the killed executor's runs took {recovery_s:.0f}s to finish"
    assert "Traceback" not in survivor_log or "CancelledError" in survivor_log, survivor_log[-3000:]


def test_background_responses_survive_the_kill_9_of_their_executor(cluster):
    """A background response is a run: a killed executor's responses finish on the other one, each
    answer written once, and polling shows them complete."""
    from openai import OpenAI

    victim, _ = cluster.add_executors(2, max_runs=4)
    client = OpenAI(base_url=f"{cluster.edge.base_url}/v1", api_key="unused", max_retries=0, timeout=60)
    started = [
        client.responses.create(model="echo-agent", input=f"bg {i} [[long:40]] [[delay:50]]", background=True)
        for i in range(6)
    ]
    deadline = time.monotonic() + 30
    while not any(client.responses.retrieve(r.id).status == "in_progress" for r in started):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(5) == -signal.SIGKILL
    finished = {}
    deadline = time.monotonic() + 90
    while len(finished) < len(started):
        assert time.monotonic() < deadline, {r.id: client.responses.retrieve(r.id).status for r in started}
        for r in started:
            now = client.responses.retrieve(r.id)
            if now.status not in ("queued", "in_progress"):
                finished[r.id] = now
        time.sleep(0.2)
    expected = " ".join(f"w{i}" for i in range(40))
    for response in finished.values():
        assert response.status == "completed"
        assert [item.type for item in response.output] == ["message"]  # one answer, not two
        assert response.output_text == expected


def test_a_nats_server_restart_mid_run_loses_nothing(fake_llm, tmp_path):
    from ossabus.runtime.nats_server import EmbeddedNats

    port = free_port()
    server = EmbeddedNats(tmp_path / "nats", port=port)
    url = server.start()
    env = {**llm_env(fake_llm), "OSSABUS_ACK_WAIT_S": "5"}
    running = Cluster(url, env, tmp_path)
    try:
        running.add_executor(max_runs=8)
        texts = [f"through a restart {i} [[long:40]] [[delay:50]]" for i in range(6)]

        async def scenario():
            async with await OssabusClient.connect(url, timeout=120) as client:
                tasks = [await client.submit("echo-agent", text) for text in texts]
                nc = await nats.connect(url)
                streaming = await nc.subscribe("ossa.events.*.*.thread.message.delta")
                await streaming.next_msg(timeout=30)
                await nc.close()
                server.stop()  # SIGTERM: JetStream flushes to disk
                await asyncio.sleep(1.0)
                server.start()
                return tasks, await asyncio.gather(*(t.result() for t in tasks))

        tasks, results = asyncio.run(scenario())
        assert [r.status for r in results] == ["completed"] * 6
        for task in tasks:
            messages = httpx.get(f"{running.edge.base_url}/v1/threads/{task.thread_id}/messages").json()["data"]
            assert collections.Counter(m["role"] for m in messages) == {"user": 1, "assistant": 1}
        assert httpx.get(f"{running.edge.base_url}/readyz").status_code == 200
    finally:
        running.stop()
        server.stop()


def sse(lines) -> list[tuple[str | None, str, str]]:
    """(id, event, data) of each SSE event in an iterator of lines."""
    out, fields = [], {}
    for line in lines:
        if not line:
            if "data" in fields:
                out.append((fields.get("id"), fields.get("event", "message"), fields["data"]))
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value
    return out


def test_a_client_resumes_its_stream_after_a_relay_restart_without_losing_or_doubling_tokens(cluster):
    import json as jsonlib

    cluster.add_executor(max_runs=4)
    base = cluster.edge.base_url
    body = {
        "assistant_id": "asst_echoXagent",
        "stream": True,
        "thread": {"messages": [{"role": "user", "content": "resume me [[long:60]] [[delay:60]]"}]},
    }
    seen: list[tuple[str | None, str, str]] = []
    with httpx.stream("POST", f"{base}/v1/threads/runs", json=body, timeout=30) as response:
        lines = response.iter_lines()
        fields: dict[str, str] = {}
        for line in lines:  # read until a few tokens have arrived, then drop the connection
            if not line:
                if "data" in fields:
                    seen.append((fields.get("id"), fields.get("event"), fields["data"]))
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                fields[key] = value
            if sum(1 for _, event, _ in seen if event == "thread.message.delta") >= 5:
                break
    run = jsonlib.loads(next(data for _, event, data in seen if event == "thread.run.created"))
    last_id = seen[-1][0]
    assert last_id is not None

    port = base.rsplit(":", 1)[1]
    assert cluster.edge.stop() == 0  # the relay restarts while the executor keeps streaming
    cluster.edge = start_stack(
        [
            "up",
            "--nats-url",
            cluster.nats_url,
            "--manifests",
            str(rendered_agents(cluster.env["FAKE_LLM_ROOT"])),
            "--without",
            "executor",
        ],
        cluster.tmp / "edge-again.log",
        int(port),
        env=cluster.env,
    )

    url = f"{base}/v1/threads/{run['thread_id']}/runs/{run['id']}/events"
    with httpx.stream("GET", url, headers={"Last-Event-ID": last_id}, timeout=60) as response:
        assert response.status_code == 200
        rest = sse(response.iter_lines())
    assert rest[-1][1:] == ("done", "[DONE]")
    assert rest[-2][1] == "thread.run.completed"
    ids = [int(i) for i, _, _ in seen + rest if i is not None]
    assert ids == sorted(set(ids)), "an event arrived twice or out of order"

    def text(events):
        return "".join(
            jsonlib.loads(d)["delta"]["content"][0]["text"]["value"]
            for _, e, d in events
            if e == "thread.message.delta"
        )

    final = httpx.get(f"{base}/v1/threads/{run['thread_id']}/messages").json()["data"][0]
    assert text(seen) + text(rest) == final["content"][0]["text"]["value"] == " ".join(f"w{i}" for i in range(60))

    replay = sse(httpx.get(url, timeout=30).iter_lines())  # from the start, after the fact
    assert text(replay) == final["content"][0]["text"]["value"]
    bad = httpx.get(url, headers={"Last-Event-ID": "nope"})
    assert bad.status_code == 400
