"""Workflow runs through process deaths and across replicas: a kill -9 of the process carrying a run
(workflow runner and executor) mid-step, and a schedule watched by two runners."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import (
    free_port,
    llm_env,
    ossabus_command,
    process_env,
    register_manifest,
    rendered_agents,
    reset_jetstream,
    start_stack,
    user_texts,
)


class Workers:
    """`ossabus up` without executor and workflow runner, plus those as processes of their own."""

    def __init__(self, nats_url: str, env: dict[str, str], tmp: Path):
        self.nats_url, self.env, self.tmp = nats_url, env, tmp
        self.processes: list[tuple[subprocess.Popen, Path]] = []
        agents = str(rendered_agents(env["FAKE_LLM_ROOT"]))
        self.edge = start_stack(
            ["up", "--nats-url", nats_url, "--manifests", agents, "--without", "executor", "--without", "workflows"],
            tmp / "edge.log",
            free_port(),
            env=env,
        )

    def start(self, *names: str) -> list[subprocess.Popen]:
        """Processes serving `names` (started side by side), once each says it has started."""
        started = []
        for name in names:
            log = self.tmp / f"{name}-{len(self.processes)}.log"
            process = subprocess.Popen(
                ossabus_command("serve", name, "--nats-url", self.nats_url),
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
                env=process_env(self.env),
            )
            self.processes.append((process, log))
            started.append((name, process, log))
        deadline = time.monotonic() + 30 + 10 * len(names)
        for name, process, log in started:
            while f"{name} service started" not in log.read_text():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        return [process for _, process, _ in started]

    def stop(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                process.terminate()
        for process, _ in self.processes:
            process.wait(30)
        assert self.edge.stop() == 0, self.edge.logs()


@pytest.fixture
def workers(nats_url, fake_llm, tmp_path):
    asyncio.run(reset_jetstream(nats_url))
    running = Workers(nats_url, {**llm_env(fake_llm), "OSSABUS_ACK_WAIT_S": "5"}, tmp_path)
    yield running
    running.stop()


def workflow(name: str, steps: list, **spec) -> str:
    manifest = {
        "apiVersion": "ossa/v0.4.7",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"steps": steps, **spec},
    }
    return yaml.safe_dump(manifest)


@pytest.mark.timeout(300)
def test_kill_9_mid_workflow_resumes_at_the_step_it_was_on_and_runs_no_step_twice(workers, fake_llm):
    base, tag = workers.edge.base_url, uuid.uuid4().hex[:8]
    name = f"survivor-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [
                {"id": "first", "kind": "Agent", "ref": "echo-agent", "input": f"first {tag}"},
                {
                    "id": "second",
                    "kind": "Agent",
                    "ref": "echo-agent",
                    "input": f"second {tag} [[long:30]] [[delay:100]]",
                },
                {"id": "third", "kind": "Agent", "ref": "echo-agent", "input": "third ${{ steps.first.output }}"},
            ],
        ),
    )
    executor, runner = workers.start("executor", "workflows")
    run_id = httpx.post(f"{base}/v1/ossa/workflows/{name}/runs", json={}, timeout=10).json()["id"]
    url = f"{base}/v1/ossa/workflows/{name}/runs/{run_id}"
    deadline = time.monotonic() + 60
    while True:  # the second step's run is streaming its answer (3 s of it)
        second = next(s for s in httpx.get(url, timeout=10).json()["steps"] if s["id"] == "second")
        if second.get("run_id"):
            child = httpx.get(f"{base}/v1/threads/{second['thread_id']}/runs/{second['run_id']}", timeout=10).json()
            if child["status"] == "in_progress":
                break
        assert time.monotonic() < deadline, second
        time.sleep(0.1)
    time.sleep(0.5)
    for victim in (executor, runner):
        victim.send_signal(signal.SIGKILL)
    assert executor.wait(5) == runner.wait(5) == -signal.SIGKILL
    workers.start("executor", "workflows")
    deadline = time.monotonic() + 120
    while (run := httpx.get(url, timeout=10).json())["status"] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    assert run["status"] == "completed", run
    steps = {s["id"]: s for s in run["steps"]}
    assert [steps[s]["attempts"] for s in ("first", "second", "third")] == [1, 1, 1]
    assert steps["second"]["run_id"] == second["run_id"]  # the same run, taken over, not a new attempt
    assert steps["second"]["output"] == " ".join(f"w{i}" for i in range(30))
    assert run["output"] == f"Echo: third Echo: first {tag}"
    assert user_texts(fake_llm, tag).count(f"first {tag}") == 1  # finished before the kill: not asked again
    assert len(user_texts(fake_llm, f"third Echo: first {tag}")) == 1
    messages = httpx.get(f"{base}/v1/threads/{second['thread_id']}/messages", timeout=10).json()["data"]
    assert collections.Counter(m["role"] for m in messages) == {"user": 1, "assistant": 1}


@pytest.mark.timeout(300)
def test_a_schedule_watched_by_two_runners_fires_once_per_time(workers, fake_llm):
    base, tag = workers.edge.base_url, uuid.uuid4().hex[:8]
    name = f"ticker-{tag}"
    workers.start("executor", "workflows", "workflows")
    register_manifest(
        base,
        workflow(
            name,
            [{"id": "tick", "kind": "Agent", "ref": "echo-agent", "input": f"tick {tag} ${{{{ workflow.run_id }}}}"}],
            triggers=[{"type": "cron", "schedule": "* * * * * */2"}],  # every 2 s (seconds last)
        ),
    )
    url = f"{base}/v1/ossa/workflows/{name}/runs"
    deadline = time.monotonic() + 60
    while len(httpx.get(url, timeout=10).json()["data"]) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert httpx.delete(f"{base}/v1/ossa/manifests/{name}", timeout=10).status_code == 200
    time.sleep(3)  # both runners have seen the schedule go
    runs = httpx.get(url, timeout=10)
    assert runs.status_code == 404  # the workflow is gone; its runs stay in the store
    register_manifest(base, workflow(name, [{"id": "tick", "kind": "Agent", "ref": "echo-agent", "input": "x"}]))
    deadline = time.monotonic() + 60
    while True:
        runs = httpx.get(url, params={"limit": 100}, timeout=10).json()["data"]
        if all(r["status"] == "completed" for r in runs):
            break
        assert time.monotonic() < deadline, runs
        time.sleep(0.2)
    fired = [r["trigger"]["at"] for r in runs]
    assert len(fired) >= 3
    assert len(set(fired)) == len(fired)  # no time fired twice
    assert all(at % 2 == 0 for at in fired)  # on the schedule's times
    for run in runs:  # and each fire ran its step once
        assert len(user_texts(fake_llm, f"tick {tag} {run['id']}")) == 1
    logs = "".join(log.read_text() for _, log in workers.processes)
    assert "Traceback" not in logs, logs[-3000:]
