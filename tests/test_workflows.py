"""Workflow runs on the bus: pipelines, fan-out and fan-in, branches, loops, retries, compensation,
approvals, cancelling, NATS tasks and request/reply, and the mistakes a workflow can hold."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import nats
import pytest
import yaml

from ossabus.contracts import subjects
from ossabus.runtime.child_runs import attempt_ids

from conftest import eventually, register_manifest, user_texts


def unique() -> str:
    return uuid.uuid4().hex[:8]


def workflow(name: str, steps: list, **spec) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "ossa/v0.4.7",
            "kind": "Workflow",
            "metadata": {"name": name, "version": "1.0.0"},
            "spec": {"steps": steps, **spec},
        }
    )


def start(base: str, name: str, value=None, **extra) -> dict:
    response = httpx.post(f"{base}/v1/ossa/workflows/{name}/runs", json={"input": value, **extra}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def finished(base: str, name: str, run_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = httpx.get(f"{base}/v1/ossa/workflows/{name}/runs/{run_id}", timeout=10).json()
        if run["status"] in ("completed", "failed", "cancelled"):
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.1)


def steps_of(run: dict) -> dict[str, dict]:
    return {s["id"]: s for s in run["steps"]}


def test_a_sequential_pipeline_feeds_each_step_the_output_before(api_stack, fake_llm):
    base, tag = api_stack.base_url, unique()
    name = f"pipeline-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [
                {
                    "id": "draft",
                    "kind": "Agent",
                    "ref": "echo-agent",
                    "input": f"${{{{ workflow.input.topic }}}} {tag}",
                },
                {
                    "id": "review",
                    "kind": "Agent",
                    "ref": "./agents/echo-agent.ossa.yaml",
                    "input": "review: ${{ steps.draft.output }}",
                },
                {
                    "id": "final",
                    "agent_ref": "echo-agent",
                    "input": {"text": "${{ steps.review.output }}", "n": "${{ length(steps.draft.output) }}"},
                },
            ],
            inputs={"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]},
        ),
    )
    created = start(base, name, {"topic": "bees"}, metadata={"ticket": "42"})
    assert created["object"] == "ossa.workflow.run"
    assert created["id"].startswith("wfrun_")
    assert created["status"] == "queued"
    assert created["metadata"] == {"ticket": "42"}
    run = finished(base, name, created["id"])
    assert run["status"] == "completed", run
    steps = steps_of(run)
    assert list(steps) == ["draft", "review", "final"]
    assert steps["draft"]["output"] == f"Echo: bees {tag}"
    assert steps["review"]["output"] == f"Echo: review: Echo: bees {tag}"
    final_input = json.loads(steps["final"]["output"].removeprefix("Echo: "))
    assert final_input == {"text": f"Echo: review: Echo: bees {tag}", "n": len(f"Echo: bees {tag}")}
    assert run["output"] == steps["final"]["output"]
    for step in steps.values():
        assert step["status"] == "completed"
        assert step["attempts"] == 1
        assert step["started_at"] <= step["completed_at"]
        child = httpx.get(f"{base}/v1/threads/{step['thread_id']}/runs/{step['run_id']}", timeout=10).json()
        assert child["status"] == "completed"
        assert child["metadata"] == {"workflow": name, "workflow_run_id": run["id"], "workflow_step": step["id"]}
    assert run["usage"]["total_tokens"] == sum(s["usage"]["total_tokens"] for s in steps.values()) > 0
    assert len(user_texts(fake_llm, tag)) == 3  # no step twice

    listed = httpx.get(f"{base}/v1/ossa/workflows/{name}/runs", timeout=10).json()
    assert [r["id"] for r in listed["data"]] == [run["id"]]
    events = httpx.get(f"{base}/v1/ossa/workflows/{name}/runs/{run['id']}/events", timeout=30)
    names = [line.removeprefix("event: ") for line in events.text.splitlines() if line.startswith("event: ")]
    assert names[:2] == ["workflow.run.queued", "workflow.run.in_progress"]
    assert names.count("workflow.step.completed") == 3
    assert names[-2:] == ["workflow.run.completed", "done"]
    ids = [int(line.removeprefix("id: ")) for line in events.text.splitlines() if line.startswith("id: ")]
    resumed = httpx.get(
        f"{base}/v1/ossa/workflows/{name}/runs/{run['id']}/events", headers={"Last-Event-ID": str(ids[-3])}, timeout=30
    )
    assert [line for line in resumed.text.splitlines() if line.startswith("event: ")] == [
        f"event: {n}" for n in names[-3:]
    ]


def test_a_streamed_start_answers_with_the_runs_events(api_stack):
    base, tag = api_stack.base_url, unique()
    name = f"streamed-{tag}"
    register_manifest(base, workflow(name, [{"id": "only", "kind": "Agent", "ref": "echo-agent", "input": "hi"}]))
    with httpx.stream("POST", f"{base}/v1/ossa/workflows/{name}/runs", json={"stream": True}, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    events = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
    assert events[0]["status"] == "queued"
    assert events[-1]["status"] == "completed"
    assert events[-1]["output"] == "Echo: hi"


def test_a_parallel_fan_out_runs_at_once_and_fans_in(api_stack, fake_llm):
    base, tag = api_stack.base_url, unique()
    name = f"fanout-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [
                {
                    "id": "both",
                    "kind": "Parallel",
                    "parallel": [
                        {"id": "left", "kind": "Agent", "ref": "echo-agent", "input": f"left {tag} [[slow:1]]"},
                        {"id": "right", "kind": "Agent", "ref": "echo-agent", "input": f"right {tag} [[slow:1]]"},
                    ],
                },
                {
                    "id": "join",
                    "kind": "Agent",
                    "ref": "echo-agent",
                    "input": "${{ steps.left.output }} + ${{ steps.both.output.right }}",
                },
            ],
        ),
    )
    fake_llm.reset()
    run = finished(base, name, start(base, name)["id"])
    assert run["status"] == "completed", (run["last_error"], run["steps"])
    steps = steps_of(run)
    assert steps["both"]["output"] == {"left": f"Echo: left {tag}", "right": f"Echo: right {tag}"}
    assert steps["join"]["output"] == f"Echo: Echo: left {tag} + Echo: right {tag}"
    assert fake_llm.concurrency(tag)["max"] >= 2
    assert steps["join"]["started_at"] >= max(steps["left"]["completed_at"], steps["right"]["completed_at"])


def test_depends_on_makes_a_graph_and_a_skipped_dependency_skips_its_dependents(api_stack):
    base, tag = api_stack.base_url, unique()
    name = f"graph-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [
                {"id": "a", "kind": "Agent", "ref": "echo-agent", "input": "a"},
                {
                    "id": "b",
                    "kind": "Agent",
                    "ref": "echo-agent",
                    "input": "b",
                    "condition": "${{ workflow.input.go == true }}",
                },
                {"id": "c", "kind": "Agent", "ref": "echo-agent", "input": "c", "depends_on": ["b"]},
                {
                    "id": "d",
                    "kind": "Agent",
                    "ref": "echo-agent",
                    "input": "d ${{ steps.a.output }}",
                    "depends_on": ["a"],
                },
            ],
        ),
    )
    run = finished(base, name, start(base, name, {"go": False})["id"])
    steps = steps_of(run)
    assert run["status"] == "completed", run
    assert (steps["b"]["status"], steps["c"]["status"], steps["d"]["status"]) == ("skipped", "skipped", "completed")
    assert "depends on b" in steps["c"]["last_error"]["message"]
    assert run["output"] == "Echo: d Echo: a"


def test_a_conditional_takes_the_first_true_branch_or_else(api_stack):
    base, tag = api_stack.base_url, unique()
    name = f"branch-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [
                {"id": "check", "kind": "Agent", "ref": "echo-agent", "input": "${{ workflow.input.text }} [[json]]"},
                {
                    "id": "route",
                    "kind": "Conditional",
                    "branches": [
                        {
                            "condition": "${{ steps.check.output.ok && workflow.input.urgent }}",
                            "steps": [{"id": "page", "kind": "Agent", "ref": "echo-agent", "input": "page someone"}],
                        },
                        {
                            "condition": "${{ contains(steps.check.output.answer, 'bug') }}",
                            "steps": [{"id": "ticket", "kind": "Agent", "ref": "echo-agent", "input": "file a ticket"}],
                        },
                    ],
                    "else": [{"id": "ignore", "kind": "Agent", "ref": "echo-agent", "input": "nothing to do"}],
                },
            ],
        ),
    )
    urgent = finished(base, name, start(base, name, {"text": "a bug", "urgent": True})["id"])
    bug = finished(base, name, start(base, name, {"text": "a Bug", "urgent": False})["id"])
    other = finished(base, name, start(base, name, {"text": "fine", "urgent": False})["id"])
    assert [r["status"] for r in (urgent, bug, other)] == ["completed"] * 3
    assert (
        steps_of(urgent)["route"]["branch"],
        steps_of(bug)["route"]["branch"],
        steps_of(other)["route"]["branch"],
    ) == (0, 1, -1)
    assert "page" in steps_of(urgent)
    assert "ticket" not in steps_of(urgent)
    assert (urgent["output"], bug["output"], other["output"]) == (
        "Echo: page someone",
        "Echo: file a ticket",
        "Echo: nothing to do",
    )


def test_a_loop_runs_its_body_per_item_in_order(api_stack):
    base, tag = api_stack.base_url, unique()
    name = f"loop-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [
                {
                    "id": "each",
                    "kind": "Loop",
                    "loop": {"over": "${{ workflow.input.names }}", "as": "who", "parallelism": 2},
                    "steps": [
                        {"id": "greet", "kind": "Agent", "ref": "echo-agent", "input": "hello ${{ who }} #${{ index }}"}
                    ],
                }
            ],
        ),
    )
    run = finished(base, name, start(base, name, {"names": ["ann", "bo", "cy"]})["id"])
    assert run["status"] == "completed", run
    assert run["output"] == ["Echo: hello ann #0", "Echo: hello bo #1", "Echo: hello cy #2"]
    steps = steps_of(run)
    assert {k for k in steps if k.startswith("each[")} == {"each[0].greet", "each[1].greet", "each[2].greet"}


def test_a_loop_over_too_many_items_fails_precisely_and_runs_nothing(api_stack, fake_llm):
    base, tag = api_stack.base_url, unique()
    name = f"bigloop-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [
                {
                    "id": "each",
                    "kind": "Loop",
                    "loop": {"over": "${{ workflow.input }}"},
                    "steps": [{"id": "s", "kind": "Agent", "ref": "echo-agent", "input": f"{tag} ${{{{ item }}}}"}],
                }
            ],
        ),
    )
    run = finished(base, name, start(base, name, list(range(1001)))["id"])
    assert run["status"] == "failed"
    assert run["last_error"]["code"] == "loop_too_long"
    assert run["last_error"]["step"] == "each"
    assert "1001 items" in run["last_error"]["message"]
    assert user_texts(fake_llm, tag) == []


def test_a_failing_step_is_retried_then_compensated(api_stack, fake_llm):
    base, tag = api_stack.base_url, unique()
    name = f"compensate-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [
                {"id": "reserve", "kind": "Agent", "ref": "echo-agent", "input": f"reserve {tag}"},
                {
                    "id": "charge",
                    "kind": "Agent",
                    "ref": "echo-agent",
                    "input": f"charge {tag} [[fail:500]]",
                    "retry": {"max_attempts": 2, "backoff_strategy": "fixed", "initial_delay_ms": 100},
                    "on_error": {
                        "action": "compensate",
                        "compensation": {
                            "id": "release",
                            "kind": "Agent",
                            "ref": "echo-agent",
                            "input": "release ${{ steps.reserve.output }}",
                        },
                    },
                },
                {"id": "ship", "kind": "Agent", "ref": "echo-agent", "input": f"ship {tag}"},
            ],
        ),
    )
    run = finished(base, name, start(base, name)["id"], timeout=90)
    assert run["status"] == "failed"
    assert run["last_error"]["step"] == "charge"
    assert run["last_error"]["code"] == "server_error"
    steps = steps_of(run)
    assert steps["charge"]["status"] == "failed"
    assert steps["charge"]["attempts"] == 2
    assert steps["release"]["status"] == "completed"
    assert steps["release"]["output"] == f"Echo: release Echo: reserve {tag}"
    assert steps["ship"]["status"] == "pending"
    assert user_texts(fake_llm, f"ship {tag}") == []
    # each attempt was a run of its own, and both failed; the step shows the last one's
    attempt_runs = [attempt_ids(run["id"], "charge", n) for n in (1, 2)]
    assert (steps["charge"]["thread_id"], steps["charge"]["run_id"]) == attempt_runs[1]
    for thread_id, run_id in attempt_runs:
        attempt = httpx.get(f"{base}/v1/threads/{thread_id}/runs/{run_id}", timeout=10).json()
        assert attempt["status"] == "failed"


def test_a_step_that_fails_once_succeeds_on_its_retry(api_stack):
    base, tag = api_stack.base_url, unique()
    name = f"retry-{tag}"
    # echo-agent makes 3 model calls per run: the first run fails, the second attempt's run passes
    register_manifest(
        base,
        workflow(
            name,
            [
                {
                    "id": "flaky",
                    "kind": "Agent",
                    "ref": "echo-agent",
                    "input": f"flaky {tag} [[fail:500:3]]",
                    "retry": {"max_attempts": 3, "initial_delay_ms": 100, "retryable_errors": ["server_error"]},
                }
            ],
        ),
    )
    run = finished(base, name, start(base, name)["id"], timeout=90)
    assert run["status"] == "completed", run
    assert steps_of(run)["flaky"]["attempts"] == 2
    assert run["output"] == f"Echo: flaky {tag}"


def test_workflow_level_compensation_and_continue(api_stack):
    base, tag = api_stack.base_url, unique()
    halting = f"undo-{tag}"
    register_manifest(
        base,
        workflow(
            halting,
            [{"id": "boom", "kind": "Agent", "ref": "no-such-agent", "input": "x"}],
            error_handling={
                "on_failure": "compensate",
                "compensation_steps": [
                    {"id": "cleanup", "kind": "Agent", "ref": "echo-agent", "input": "clean ${{ workflow.error }}"}
                ],
            },
        ),
    )
    run = finished(base, halting, start(base, halting)["id"])
    assert run["status"] == "failed"
    assert run["last_error"] == {
        "code": "not_found",
        "message": "no agent or task named 'no-such-agent' is registered",
        "step": "boom",
    }
    assert steps_of(run)["cleanup"]["status"] == "completed"

    going = f"onward-{tag}"
    register_manifest(
        base,
        workflow(
            going,
            [
                {"id": "boom", "kind": "Agent", "ref": "no-such-agent", "input": "x", "continue_on_error": True},
                {"id": "after", "kind": "Agent", "ref": "echo-agent", "input": "status ${{ steps.boom.status }}"},
            ],
        ),
    )
    run = finished(base, going, start(base, going)["id"])
    assert run["status"] == "completed", run
    assert run["output"] == "Echo: status failed"


def test_a_task_step_checks_its_input_and_returns_the_object(api_stack):
    base, tag = api_stack.base_url, unique()
    name = f"task-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [
                {
                    "id": "sum",
                    "kind": "Task",
                    "ref": "summary-task",
                    "input": {"text": "${{ workflow.input }} [[json]]"},
                },
                {"id": "bad", "kind": "Task", "ref": "summary-task", "input": {"words": 3}},
            ],
        ),
    )
    run = finished(base, name, start(base, name, "notes")["id"])
    steps = steps_of(run)
    assert steps["sum"]["status"] == "completed"
    assert steps["sum"]["output"]["ok"] is True
    assert steps["bad"]["status"] == "failed"
    assert steps["bad"]["attempts"] == 1  # a mistake in the input is not retried
    assert run["last_error"]["code"] == "invalid_request"
    assert "input schema" in run["last_error"]["message"]


def test_an_approval_step_waits_for_a_person(api_stack, fake_llm):
    base, tag = api_stack.base_url, unique()
    name = f"approve-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [
                {"id": "gate", "kind": "Approval", "approval": {"message": "ship it?"}},
                {
                    "id": "ship",
                    "kind": "Agent",
                    "ref": "echo-agent",
                    "input": f"ship {tag} ${{{{ steps.gate.output.reason }}}}",
                },
            ],
        ),
    )
    url = f"{base}/v1/ossa/workflows/{name}/runs"

    def waiting(run_id: str) -> dict:
        deadline = time.monotonic() + 30
        while True:
            run = httpx.get(f"{url}/{run_id}", timeout=10).json()
            if run["status"] == "requires_action":
                return run
            assert time.monotonic() < deadline, run
            time.sleep(0.1)

    approved = start(base, name)["id"]
    assert steps_of(waiting(approved))["gate"]["status"] == "requires_action"
    assert user_texts(fake_llm, f"ship {tag}") == []
    decided = httpx.post(f"{url}/{approved}/steps/gate/approval", json={"approve": True, "reason": "lgtm"}, timeout=10)
    assert decided.status_code == 200, decided.text
    again = httpx.post(f"{url}/{approved}/steps/gate/approval", json={"approve": False}, timeout=10)
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "invalid_state"
    run = finished(base, name, approved)
    assert run["status"] == "completed", run
    assert run["output"] == f"Echo: ship {tag} lgtm"
    assert steps_of(run)["gate"]["approval"]["approved"] is True

    rejected = start(base, name)["id"]
    waiting(rejected)
    httpx.post(f"{url}/{rejected}/steps/gate/approval", json={"approve": False, "reason": "not today"}, timeout=10)
    run = finished(base, name, rejected)
    assert run["status"] == "failed"
    assert run["last_error"] == {"code": "rejected", "message": "the step was rejected: not today", "step": "gate"}


def test_cancelling_a_run_stops_its_running_step(api_stack):
    base, tag = api_stack.base_url, unique()
    name = f"cancel-{tag}"
    register_manifest(
        base, workflow(name, [{"id": "slow", "kind": "Agent", "ref": "echo-agent", "input": f"{tag} [[slow:20]]"}])
    )
    run_id = start(base, name)["id"]
    url = f"{base}/v1/ossa/workflows/{name}/runs/{run_id}"
    deadline = time.monotonic() + 30
    while not (step := steps_of(httpx.get(url, timeout=10).json())["slow"]).get("run_id"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancelled = httpx.post(f"{url}/cancel", timeout=10)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelling"
    run = finished(base, name, run_id, timeout=30)
    assert run["status"] == "cancelled"
    assert steps_of(run)["slow"]["status"] == "cancelled"

    def child_ended():
        child = httpx.get(f"{base}/v1/threads/{step['thread_id']}/runs/{step['run_id']}", timeout=10).json()
        assert child["status"] == "cancelled"

    eventually(child_ended)
    again = httpx.post(f"{url}/cancel", timeout=10)
    assert again.status_code == 400


@pytest.mark.parametrize(
    ("steps", "spec", "fragment"),
    [
        (
            [
                {"id": "a", "kind": "Agent", "ref": "echo-agent", "depends_on": ["b"]},
                {"id": "b", "kind": "Agent", "ref": "echo-agent", "depends_on": ["a"]},
            ],
            {},
            "in a circle: a -> b -> a",
        ),
        ([{"id": "a", "kind": "Agent", "ref": "echo-agent", "input": "${{ steps.nope.output }}"}], {}, "nope"),
        (
            [{"id": "a", "kind": "Agent", "ref": "echo-agent", "input": "${{ steps.a.output == }}"}],
            {},
            "ends too early",
        ),
        (
            [{"id": "a", "kind": "Agent", "ref": "echo-agent", "on_error": {"action": "goto", "goto": "elsewhere"}}],
            {},
            "goto 'elsewhere'",
        ),
        ([{"id": "a", "kind": "Agent", "ref": "echo-agent", "retry": {"max_attempts": 50}}], {}, "max_attempts"),
        (
            [{"id": "a", "kind": "Agent", "ref": "echo-agent"}],
            {"inputs": {"type": "objekt"}},
            "inputs schema is not a valid",
        ),
        ([{"id": "a", "kind": "Agent", "ref": "echo-agent", "input": "${{ eval('x') }}"}], {}, "unknown function"),
        (
            [{"id": "a", "kind": "Agent", "ref": "echo-agent", "input": "${{ " + "(" * 900 + "1" + ")" * 900 + " }}"}],
            {},
            "nested too deeply",
        ),
    ],
)
def test_a_workflow_that_cannot_run_is_refused_at_registration(api_stack, steps, spec, fragment):
    text = workflow(f"broken-{unique()}", steps, **spec)
    response = httpx.put(
        f"{api_stack.base_url}/v1/ossa/manifests/{yaml.safe_load(text)['metadata']['name']}",
        content=text,
        headers={"content-type": "application/yaml"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert fragment in response.text


def test_bad_starts_get_clear_errors(api_stack):
    base, tag = api_stack.base_url, unique()
    name = f"strict-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [{"id": "a", "kind": "Agent", "ref": "echo-agent", "input": "x"}],
            inputs={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        ),
    )
    url = f"{base}/v1/ossa/workflows"
    cases = [
        (f"{url}/{name}/runs", {"input": {"n": "seven"}}, 400, "input"),
        (f"{url}/{name}/runs", {"input": {}}, 400, "input"),
        (f"{url}/{name}/runs", {"input": {"n": 1}, "surprise": 1}, 400, None),
        (f"{url}/{name}/runs", {"input": {"n": 1}, "run_id": "wfrun_a.b"}, 400, "run_id"),
        (f"{url}/no-such-workflow/runs", {}, 404, "name"),
        (f"{url}/echo-agent/runs", {}, 404, "name"),
    ]
    for target, body, status, param in cases:
        response = httpx.post(target, json=body, timeout=10)
        assert response.status_code == status, (body, response.text)
        error = response.json()["error"]
        assert error["message"]
        if param:
            assert error["param"] == param, error
    assert httpx.get(f"{url}/{name}/runs/wfrun_missing", timeout=10).status_code == 404
    assert httpx.get(f"{url}/{name}/runs", timeout=10).json()["data"] == []


async def test_other_systems_start_workflows_over_nats(api_stack, nats_url):
    base, tag = api_stack.base_url, unique()
    name = f"bus-{tag}"
    register_manifest(
        base,
        workflow(
            name, [{"id": "a", "kind": "Agent", "ref": "echo-agent", "input": "from the bus ${{ workflow.input.n }}"}]
        ),
    )
    nc = await nats.connect(nats_url)
    try:
        run_id = f"wfrun_{tag}"
        events = await nc.subscribe(subjects.workflow_events(name, run_id))
        js = nc.jetstream()
        body = json.dumps({"input": {"n": 1}, "run_id": run_id}).encode()
        for _ in range(2):  # the same message twice: one run
            await js.publish(subjects.workflow(name), body, headers={"Nats-Msg-Id": f"order-{tag}"})
        seen = []
        while not seen or seen[-1] != "workflow.run.completed":
            seen.append(json.loads((await events.next_msg(timeout=30)).data)["event"])
        assert seen[0] == "workflow.run.queued"
        reply = await nc.request(subjects.workflow_ask(name), json.dumps({"input": {"n": 2}}).encode(), timeout=30)
        answered = json.loads(reply.data)
        assert answered["ok"] is True
        assert answered["result"]["output"] == "Echo: from the bus 2"
        refused = json.loads((await nc.request(subjects.workflow_ask("no-such-workflow"), b"{}", timeout=10)).data)
        assert refused["ok"] is False
        assert refused["error"]["code"] == "not_found"
    finally:
        await nc.close()
    async with httpx.AsyncClient(timeout=10) as http:
        run = (await http.get(f"{base}/v1/ossa/workflows/{name}/runs/{run_id}")).json()
    assert run["status"] == "completed"
    assert run["trigger"]["type"] == "nats"
    assert run["output"] == "Echo: from the bus 1"


async def test_an_event_from_another_system_starts_the_workflows_it_triggers(api_stack, nats_url):
    base, tag = api_stack.base_url, unique()
    name = f"on-order-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [{"id": "a", "kind": "Agent", "ref": "echo-agent", "input": "order ${{ workflow.input.id }}"}],
            triggers=[{"type": "event", "source": f"shop{tag}", "event": "order.created", "filter": {"country": "NL"}}],
        ),
    )
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        subject = f"ossa.ext.shop{tag}.order.created"
        await js.publish(subject, json.dumps({"id": 1, "country": "NL"}).encode())
        await js.publish(subject, json.dumps({"id": 2, "country": "DE"}).encode())  # filtered out
        await js.publish(f"ossa.ext.shop{tag}.order.deleted", json.dumps({"id": 3, "country": "NL"}).encode())
        async with httpx.AsyncClient(timeout=10) as http:
            deadline = time.monotonic() + 30
            while True:
                runs = (await http.get(f"{base}/v1/ossa/workflows/{name}/runs")).json()["data"]
                if runs and runs[0]["status"] == "completed":
                    break
                assert time.monotonic() < deadline, runs
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)  # the other two events had time to (wrongly) start runs
            runs = (await http.get(f"{base}/v1/ossa/workflows/{name}/runs")).json()["data"]
    finally:
        await nc.close()
    assert len(runs) == 1
    assert runs[0]["input"] == {"id": 1, "country": "NL"}
    assert runs[0]["trigger"]["type"] == "event"
    assert runs[0]["trigger"]["subject"] == subject
    assert runs[0]["output"] == "Echo: order 1"


def test_a_webhook_trigger_starts_a_run_once_per_idempotency_key(api_stack):
    base, tag = api_stack.base_url, unique()
    name = f"hook-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [{"id": "a", "kind": "Agent", "ref": "echo-agent", "input": "hook ${{ workflow.input.n }}"}],
            triggers=[{"type": "webhook", "path": "/ignored", "authentication": {"type": "bearer"}}],
        ),
    )
    url = f"{base}/v1/ossa/workflows/{name}/webhook"
    first = httpx.post(url, json={"n": 5}, headers={"Idempotency-Key": f"delivery-{tag}"}, timeout=10)
    again = httpx.post(url, json={"n": 5}, headers={"Idempotency-Key": f"delivery-{tag}"}, timeout=10)
    assert first.status_code == 202, first.text
    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert finished(base, name, first.json()["id"])["output"] == "Echo: hook 5"
    broken = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}, timeout=10)
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "invalid_json"
    plain = f"nohook-{tag}"
    register_manifest(base, workflow(plain, [{"id": "a", "kind": "Agent", "ref": "echo-agent", "input": "x"}]))
    assert httpx.post(f"{base}/v1/ossa/workflows/{plain}/webhook", json={}, timeout=10).status_code == 404


def sample(schema: dict | None):
    """A value that satisfies a simple JSON Schema: required properties filled by type."""
    schema = schema or {}
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: sample(properties.get(name)) for name in schema.get("required") or []}
    return {"string": "x", "integer": 1, "number": 1.5, "boolean": True, "array": ["a", "b"]}.get(kind, "x")


def echo_agent(name: str) -> dict:
    return {
        "apiVersion": "ossa/v0.4.7",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {"role": f"You are {name}.", "llm": {"provider": "openai", "model": "fake-model"}},
    }


@pytest.mark.parametrize(
    "path",
    [
        "workflows__simple-etl.yaml",
        "workflows__batch-email-campaign.yaml",
        "getting-started__05-workflow-composition.ossa.yaml",
        "manifests/content-pipeline.ossa.yaml",  # ossabus's own, in the repository's manifests/
    ],
)
def test_the_shipped_example_workflows_run_against_the_fake_upstream(api_stack, path):
    from ossabus.contracts.workflow_plan import every_step, plan_of

    from conftest import REPO, shared_path

    base = api_stack.base_url
    file = REPO / path if path.startswith("manifests/") else shared_path("ossa", "examples-v0.4", path)
    assert file.exists(), file
    text = file.read_text()
    manifest = yaml.safe_load(text)
    plan = plan_of(manifest["spec"])
    refs = {s.ref for s in every_step(plan.steps) + every_step(plan.compensation) if s.ref}
    for ref in refs:  # the agents and tasks the example names, played by the fake upstream
        register_manifest(base, echo_agent(ref))
    register_manifest(base, text)
    name = manifest["metadata"]["name"]
    run = finished(base, name, start(base, name, sample(plan.inputs_schema))["id"], timeout=120)
    if plan.outputs_schema and plan.output is None:
        # every step ran, but the fake's text answers do not make the object the workflow declares
        assert run["status"] == "failed", run
        assert run["last_error"]["code"] == "invalid_output"
        assert run["last_error"]["step"] is None
    else:
        assert run["status"] == "completed", (run["last_error"], run["steps"])
    statuses = {s["id"]: s["status"] for s in run["steps"]}
    assert set(statuses.values()) <= {"completed", "skipped"}, statuses
    ran = [s for s in run["steps"] if s["run_id"]]
    assert ran, statuses
    for step in ran:
        child = httpx.get(f"{base}/v1/threads/{step['thread_id']}/runs/{step['run_id']}", timeout=10).json()
        assert child["status"] == "completed"


def test_a_concurrency_group_runs_its_members_one_at_a_time(api_stack, fake_llm):
    base, tag = api_stack.base_url, unique()
    name = f"grouped-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [
                {
                    "id": "work",
                    "kind": "Agent",
                    "ref": "echo-agent",
                    "input": f"{tag} ${{{{ workflow.input.key }}}} [[slow:1.5]]",
                }
            ],
            concurrency={"group": "orders-${{ workflow.input.key }}"},
        ),
    )
    fake_llm.reset()
    first, second, other = (start(base, name, {"key": key})["id"] for key in ("a", "a", "b"))
    runs = [finished(base, name, run_id) for run_id in (first, second, other)]
    assert [r["status"] for r in runs] == ["completed"] * 3
    assert fake_llm.concurrency(tag)["max"] == 2  # a+b, never a+a+b
    assert runs[1]["started_at"] >= runs[0]["completed_at"]

    cancelling = f"latest-wins-{tag}"
    register_manifest(
        base,
        workflow(
            cancelling,
            [
                {
                    "id": "work",
                    "kind": "Agent",
                    "ref": "echo-agent",
                    "input": f"{tag} ${{{{ workflow.input.n }}}} [[slow:20]]",
                }
            ],
            concurrency={"group": "one", "cancel_in_progress": True},
        ),
    )
    old = start(base, cancelling, {"n": 1})["id"]
    deadline = time.monotonic() + 30
    while httpx.get(f"{base}/v1/ossa/workflows/{cancelling}/runs/{old}", timeout=10).json()["status"] != "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    new = start(base, cancelling, {"n": 2})["id"]
    assert finished(base, cancelling, old, timeout=30)["status"] == "cancelled"
    running = httpx.get(f"{base}/v1/ossa/workflows/{cancelling}/runs/{new}", timeout=10).json()
    assert running["status"] in ("in_progress", "queued")
    httpx.post(f"{base}/v1/ossa/workflows/{cancelling}/runs/{new}/cancel", timeout=10)
    assert finished(base, cancelling, new, timeout=30)["status"] == "cancelled"


def test_a_step_output_past_the_bound_fails_the_step_precisely(api_stack):
    base, tag = api_stack.base_url, unique()
    name = f"huge-{tag}"
    register_manifest(
        base, workflow(name, [{"id": "big", "kind": "Agent", "ref": "echo-agent", "input": f"{tag} [[long:5000]]"}])
    )
    run = finished(base, name, start(base, name)["id"], timeout=120)
    assert run["status"] == "failed"
    assert run["last_error"]["code"] == "output_too_large"
    assert run["last_error"]["step"] == "big"
    assert "OSSABUS_WORKFLOW_MAX_OUTPUT_BYTES" in run["last_error"]["message"]
    assert steps_of(run)["big"]["output"] is None


def test_step_and_workflow_timeouts_stop_their_runs(api_stack):
    base, tag = api_stack.base_url, unique()
    name = f"step-timeout-{tag}"
    register_manifest(
        base,
        workflow(
            name,
            [{"id": "slow", "kind": "Agent", "ref": "echo-agent", "input": f"{tag} [[slow:10]]", "timeout_seconds": 1}],
        ),
    )
    run = finished(base, name, start(base, name)["id"], timeout=60)
    assert run["status"] == "failed"
    assert run["last_error"] == {"code": "timeout", "message": "the step did not finish within 1 s", "step": "slow"}
    step = steps_of(run)["slow"]

    def cancelled(thread_id: str, run_id: str) -> None:
        child = httpx.get(f"{base}/v1/threads/{thread_id}/runs/{run_id}", timeout=10).json()
        assert child["status"] == "cancelled"

    eventually(lambda: cancelled(step["thread_id"], step["run_id"]))

    whole = f"workflow-timeout-{tag}"
    register_manifest(
        base,
        workflow(
            whole,
            [{"id": "slow", "kind": "Agent", "ref": "echo-agent", "input": f"{tag} whole [[slow:10]]"}],
            timeout_seconds=1,
        ),
    )
    run = finished(base, whole, start(base, whole)["id"], timeout=60)
    assert run["status"] == "failed"
    assert run["last_error"]["code"] == "timeout"
    assert "within 1 s" in run["last_error"]["message"]
    step = steps_of(run)["slow"]
    assert step["status"] == "cancelled"
    eventually(lambda: cancelled(step["thread_id"], step["run_id"]))
