"""Human approval of tool calls: the run parks in `requires_action` (type `submit_tool_approvals`), a
person approves or denies through the API, approved calls run, denials reach the model."""

import json

import httpx
import pytest
from openai import BadRequestError, OpenAI
from openai.types.beta.threads import Run

from openapi_check import openapi_errors

AGENT = "asst_approvalXagent"
REFUND = '[[call:refund {"order": "A-7", "amount": 20}]]'
LOOKUP = '[[call:lookup {"order": "A-7"}]]'


@pytest.fixture(scope="module")
def client(api_stack) -> OpenAI:
    return OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def park(client: OpenAI, text: str):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=AGENT, poll_interval_ms=100)
    return thread.id, run


def decide(client: OpenAI, thread_id: str, run_id: str, approvals: list[dict]) -> Run:
    return client.post(
        f"/threads/{thread_id}/runs/{run_id}/submit_tool_approvals", body={"approvals": approvals}, cast_to=Run
    )


def tool_calls(client: OpenAI, thread_id: str, run_id: str) -> dict:
    steps = client.beta.threads.runs.steps.list(thread_id=thread_id, run_id=run_id, order="asc").data
    return {c.function.name: c for c in steps[0].step_details.tool_calls}


def finished(client: OpenAI, thread_id: str, run: Run) -> Run:
    return client.beta.threads.runs.poll(thread_id=thread_id, run_id=run.id, poll_interval_ms=100)


def test_a_call_needing_approval_parks_the_run_while_the_others_run(api_stack, client):
    thread_id, run = park(client, f"{REFUND} {LOOKUP}")
    assert run.status == "requires_action"
    assert run.required_action.type == "submit_tool_approvals"
    waiting = run.required_action.model_extra["submit_tool_approvals"]["tool_calls"]
    assert [c["function"]["name"] for c in waiting] == ["refund"]
    assert json.loads(waiting[0]["function"]["arguments"]) == {"order": "A-7", "amount": 20}
    calls = tool_calls(client, thread_id, run.id)
    assert calls["refund"].function.output is None
    assert calls["refund"].model_extra["approval"]["status"] == "pending"
    assert json.loads(calls["lookup"].function.output)["received"] == {"order": "A-7"}  # ran unasked
    shape = httpx.get(f"{api_stack.base_url}/v1/threads/{thread_id}/runs/{run.id}").json()
    assert shape["required_action"]["type"] == "submit_tool_approvals"
    shape["required_action"] = None  # the one documented extension to OpenAI's Run
    assert not openapi_errors(shape, "RunObject")
    assert not openapi_errors(waiting[0], "RunToolCallObject")


def test_an_approved_call_runs_and_the_run_completes(client):
    thread_id, run = park(client, f"{REFUND} {LOOKUP}")
    call_id = run.required_action.model_extra["submit_tool_approvals"]["tool_calls"][0]["id"]
    queued = decide(client, thread_id, run.id, [{"tool_call_id": call_id, "approve": True}])
    assert queued.status == "queued"
    run = finished(client, thread_id, run)
    assert run.status == "completed"
    refund = tool_calls(client, thread_id, run.id)["refund"]
    assert refund.model_extra["approval"]["status"] == "approved"
    assert json.loads(refund.function.output)["received"] == {"order": "A-7", "amount": 20}
    answer = client.beta.threads.messages.list(thread_id=thread_id).data[0].content[0].text.value
    lookup = tool_calls(client, thread_id, run.id)["lookup"]
    assert answer == f"Tool results: {refund.function.output} | {lookup.function.output}"


def test_a_denied_call_is_reported_to_the_model_with_the_reason(client):
    thread_id, run = park(client, REFUND)
    call_id = run.required_action.model_extra["submit_tool_approvals"]["tool_calls"][0]["id"]
    decide(client, thread_id, run.id, [{"tool_call_id": call_id, "approve": False, "reason": "over the limit"}])
    run = finished(client, thread_id, run)
    assert run.status == "completed"
    refund = tool_calls(client, thread_id, run.id)["refund"]
    assert refund.model_extra["approval"] == {
        "status": "denied",
        "reason": "over the limit",
        "decided_at": refund.model_extra["approval"]["decided_at"],
    }
    error = json.loads(refund.function.output)["error"]
    assert error == {"code": "denied", "message": "a person declined this call: over the limit"}
    answer = client.beta.threads.messages.list(thread_id=thread_id).data[0].content[0].text.value
    assert answer == f"Tool results: {refund.function.output}"


def test_mcp_tools_declared_with_requires_approval_wait_too(client):
    thread_id, run = park(client, '[[call:add {"a": 4, "b": 5}]]')
    assert run.required_action.type == "submit_tool_approvals"
    call_id = run.required_action.model_extra["submit_tool_approvals"]["tool_calls"][0]["id"]
    decide(client, thread_id, run.id, [{"tool_call_id": call_id, "approve": True}])
    run = finished(client, thread_id, run)
    assert run.status == "completed"
    assert tool_calls(client, thread_id, run.id)["add"].function.output == "9"


def test_approvals_stream_the_rest_of_the_run(api_stack, client):
    thread_id, run = park(client, REFUND)
    call_id = run.required_action.model_extra["submit_tool_approvals"]["tool_calls"][0]["id"]
    body = {"approvals": [{"tool_call_id": call_id, "approve": True}], "stream": True}
    url = f"{api_stack.base_url}/v1/threads/{thread_id}/runs/{run.id}/submit_tool_approvals"
    with httpx.stream("POST", url, json=body, timeout=30) as response:
        assert response.status_code == 200
        names = [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event: ")]
    assert names[0] == "thread.run.queued"
    assert "thread.run.step.delta" in names  # the approved call's output
    assert names[-2:] == ["thread.run.completed", "done"]


@pytest.mark.parametrize(
    ("approvals", "param", "says"),
    [
        ([{"tool_call_id": "call_nope", "approve": True}], "approvals[0].tool_call_id", "no pending tool call"),
        ([], "approvals", "at least 1"),
        ([{"tool_call_id": "CALL", "approve": True}] * 2, "approvals[1].tool_call_id", "Duplicate approval"),
        ([{"tool_call_id": "CALL", "approve": "perhaps"}], "approvals.0.approve", "boolean"),
        ([{"tool_call_id": "CALL", "approve": True, "comment": "x"}], "approvals.0.comment", "Extra inputs"),
    ],
)
def test_bad_approvals_are_refused_and_the_run_keeps_waiting(client, approvals, param, says):
    thread_id, run = park(client, REFUND)
    call_id = run.required_action.model_extra["submit_tool_approvals"]["tool_calls"][0]["id"]
    approvals = [{**a, "tool_call_id": call_id} if a["tool_call_id"] == "CALL" else a for a in approvals]
    with pytest.raises(BadRequestError) as refused:
        decide(client, thread_id, run.id, approvals)
    assert refused.value.status_code == 400
    assert refused.value.body["param"] == param
    assert says in refused.value.body["message"]
    again = client.beta.threads.runs.retrieve(thread_id=thread_id, run_id=run.id)
    assert again.status == "requires_action"
    client.beta.threads.runs.cancel(thread_id=thread_id, run_id=run.id)


def test_outputs_and_approvals_each_go_to_their_own_endpoint(client):
    thread_id, run = park(client, REFUND)
    call_id = run.required_action.model_extra["submit_tool_approvals"]["tool_calls"][0]["id"]
    with pytest.raises(BadRequestError) as wrong:
        client.beta.threads.runs.submit_tool_outputs(
            thread_id=thread_id, run_id=run.id, tool_outputs=[{"tool_call_id": call_id, "output": "done"}]
        )
    assert wrong.value.body["code"] == "invalid_state"
    assert "submit_tool_approvals" in wrong.value.body["message"]
    decide(client, thread_id, run.id, [{"tool_call_id": call_id, "approve": True}])
    finished(client, thread_id, run)
    with pytest.raises(BadRequestError) as late:
        decide(client, thread_id, run.id, [{"tool_call_id": call_id, "approve": True}])
    assert late.value.body["code"] == "invalid_state"


async def test_a_run_started_over_nats_is_approved_over_nats(api_stack, nats_url):
    from ossabus.client import OssabusClient, TaskError

    async with await OssabusClient.connect(nats_url, timeout=60) as bus, httpx.AsyncClient() as http:
        task = await bus.submit("approval-agent", REFUND)
        parked = await task.result()
        assert parked.status == "requires_action"
        run = (await http.get(f"{api_stack.base_url}/v1/threads/{task.thread_id}/runs/{task.run_id}")).json()
        call_id = run["required_action"]["submit_tool_approvals"]["tool_calls"][0]["id"]
        with pytest.raises(TaskError) as wrong:
            await bus.answer(task.thread_id, task.run_id, tool_outputs={call_id: "done"})
        assert wrong.value.code == "conflict"
        with pytest.raises(TaskError) as unknown:
            await bus.answer(task.thread_id, task.run_id, approvals={"call_nope": True})
        assert (unknown.value.code, unknown.value.param) == ("invalid_request", "approvals[0].tool_call_id")
        queued = await bus.answer(task.thread_id, task.run_id, approvals={call_id: (False, "not over NATS")})
        assert queued["status"] == "queued"
        sub = await bus.nc.subscribe(f"ossa.events.{task.thread_id}.{task.run_id}.thread.run.completed")
        try:
            done = await sub.next_msg(timeout=30)
        finally:
            await sub.unsubscribe()
        assert json.loads(done.data)["data"]["status"] == "completed"
        url = f"{api_stack.base_url}/v1/threads/{task.thread_id}/runs/{task.run_id}/steps"
        steps = (await http.get(url)).json()["data"]
    refund = next(s for s in steps if s["type"] == "tool_calls")["step_details"]["tool_calls"][0]
    assert refund["approval"]["status"] == "denied"
    assert "not over NATS" in refund["function"]["output"]
