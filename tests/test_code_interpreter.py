"""code_interpreter in Assistants runs, through the unmodified `openai` SDK: the model's `python`
calls run in the thread's sandbox session (state kept between runs of the thread), the run steps
show `code_interpreter` calls with their input and `logs`/`image` outputs (polled and streamed), a
matplotlib chart comes back as an `image_file` in the answer, a CSV given to the thread is read, a
written file is a File (`assistants_output`) and its mention a `file_path` annotation.

The fake upstream calls `python` when told to (`[[call:python {"code": ...}]]`) and, given the
result, answers `Tool results: <output>`."""

import io
import json

import httpx
import pytest
from openai import AssistantEventHandler, OpenAI
from test_responses import conforms, events_of
from test_sandbox_kernel import needs_a_jail

from conftest import REPO, register_manifest
from openapi_check import openapi_errors


def ask(code: str, words: str = "") -> str:
    return f"{words} [[call:python {json.dumps({'code': code})}]]".strip()


@pytest.fixture(scope="module")
def client(api_stack) -> OpenAI:
    needs_a_jail()
    return OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def analyst(client):
    return client.beta.assistants.create(
        model="gpt-4o-mini",
        name="analyst",
        instructions="You analyse data with Python.",
        tools=[{"type": "code_interpreter"}],
    )


def code_calls(client: OpenAI, thread_id: str, run_id: str) -> list:
    steps = client.beta.threads.runs.steps.list(run_id=run_id, thread_id=thread_id, order="asc").data
    return [c for s in steps if s.type == "tool_calls" for c in s.step_details.tool_calls]


def test_code_runs_and_its_state_lasts_between_runs_of_the_thread(client, analyst, fake_llm):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": ask("x = 6 * 7\nprint(x)")}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=analyst.id)
    assert run.status == "completed", run.last_error
    [call] = code_calls(client, thread.id, run.id)
    assert call.type == "code_interpreter"
    assert call.code_interpreter.input == "x = 6 * 7\nprint(x)"
    assert [(o.type, o.logs) for o in call.code_interpreter.outputs] == [("logs", "42\n")]
    assert client.beta.threads.messages.list(thread.id).data[0].content[0].text.value == "Tool results: 42"
    # the model saw a function named python taking {"code"}
    offered = next(r for r in reversed(fake_llm.requests()) if r.get("tools"))["tools"]
    python = next(t["function"] for t in offered if t["function"]["name"] == "python")
    assert python["parameters"]["required"] == ["code"]

    client.beta.threads.messages.create(thread.id, role="user", content=ask("print(x + 1)"))
    again = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=analyst.id)
    assert again.status == "completed", again.last_error
    [second] = code_calls(client, thread.id, again.id)
    assert second.code_interpreter.outputs[0].logs == "43\n"  # the same kernel, a run later


def test_a_streamed_run_shows_the_code_as_it_comes_and_then_its_output(client, analyst):
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": ask("for i in range(3):\n    print('line', i)")}]
    )
    pieces, outputs, done = [], [], []

    class Handler(AssistantEventHandler):
        def on_tool_call_created(self, tool_call):
            pieces.append(tool_call.code_interpreter.input)

        def on_tool_call_delta(self, delta, snapshot):
            assert delta.type == "code_interpreter"
            if delta.code_interpreter.input:
                pieces.append(delta.code_interpreter.input)
            outputs.extend(delta.code_interpreter.outputs or [])

        def on_tool_call_done(self, tool_call):
            done.append(tool_call)

    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=analyst.id, event_handler=Handler()) as s:
        s.until_done()
        final = s.get_final_run()
    assert final.status == "completed", final.last_error
    assert len(pieces) > 1  # the code came in pieces, as the model wrote it
    assert "".join(pieces) == "for i in range(3):\n    print('line', i)"
    assert [(o.type, o.logs) for o in outputs] == [("logs", "line 0\nline 1\nline 2\n")]
    assert done[0].code_interpreter.input == "for i in range(3):\n    print('line', i)"


def test_a_chart_comes_back_as_an_image_file_and_a_written_csv_as_a_file_path(client, analyst):
    code = (
        "import matplotlib.pyplot as plt, pandas as pd\n"
        "plt.bar(['a', 'b'], [3, 5]); plt.title('sales'); plt.show()\n"
        "pd.DataFrame({'n': [3, 5]}).to_csv('totals.csv', index=False)\n"
        "print('done')"
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": ask(code)}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=analyst.id)
    assert run.status == "completed", run.last_error
    [call] = code_calls(client, thread.id, run.id)
    image_outputs = [o for o in call.code_interpreter.outputs if o.type == "image"]
    assert len(image_outputs) == 1
    png = client.files.content(image_outputs[0].image.file_id).read()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert client.files.retrieve(image_outputs[0].image.file_id).purpose == "assistants_output"

    answer = client.beta.threads.messages.list(thread.id).data[0]
    assert [part.type for part in answer.content] == ["image_file", "text"]
    assert answer.content[0].image_file.file_id == image_outputs[0].image.file_id
    text = answer.content[1].text
    # the model was told where the file is, and repeating the path makes it a link to the File
    assert "/mnt/data/totals.csv" in text.value
    [link] = [a for a in text.annotations if a.type == "file_path"]
    assert text.value[link.start_index : link.end_index] == link.text
    assert client.files.content(link.file_path.file_id).read().decode().split() == ["n", "3", "5"]
    raw = client.beta.threads.messages.with_raw_response.list(thread.id).http_response.json()
    assert openapi_errors(raw, "ListMessagesResponse") == []


def test_a_csv_attached_to_the_message_is_in_the_working_directory(client, analyst):
    uploaded = client.files.create(
        file=("sales.csv", io.BytesIO(b"region,amount\nnorth,10\nsouth,32\n")), purpose="assistants"
    )
    code = "import pandas as pd\nprint(pd.read_csv('/mnt/data/sales.csv')['amount'].sum())"
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": ask(code),
                "attachments": [{"file_id": uploaded.id, "tools": [{"type": "code_interpreter"}]}],
            }
        ]
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=analyst.id)
    assert run.status == "completed", run.last_error
    [call] = code_calls(client, thread.id, run.id)
    assert call.code_interpreter.outputs[0].logs == "42\n"


def test_an_assistants_own_files_are_there_too(client):
    uploaded = client.files.create(file=("prices.csv", io.BytesIO(b"p\n2\n5\n")), purpose="assistants")
    assistant = client.beta.assistants.create(
        model="gpt-4o-mini",
        tools=[{"type": "code_interpreter"}],
        tool_resources={"code_interpreter": {"file_ids": [uploaded.id]}},
    )
    assert assistant.tool_resources.code_interpreter.file_ids == [uploaded.id]
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": ask("print(open('prices.csv').read().split())")}]},
    )
    assert run.status == "completed", run.last_error
    [call] = code_calls(client, run.thread_id, run.id)
    assert call.code_interpreter.outputs[0].logs == "['p', '2', '5']\n"


def test_an_error_in_the_code_is_the_models_to_read_and_the_run_goes_on(client, analyst):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": ask("1 / 0")}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=analyst.id)
    assert run.status == "completed", run.last_error
    [call] = code_calls(client, thread.id, run.id)
    assert "ZeroDivisionError: division by zero" in call.code_interpreter.outputs[0].logs
    assert "ZeroDivisionError" in client.beta.threads.messages.list(thread.id).data[0].content[0].text.value


# --- Responses ----------------------------------------------------------------------------------------

CODE_TOOL = {"type": "code_interpreter", "container": {"type": "auto"}}


def test_a_response_runs_code_and_a_chained_response_keeps_its_variables(client):
    first = client.responses.create(
        model="gpt-4o-mini",
        tools=[CODE_TOOL],
        input=ask("y = 40\nprint(y + 2)"),
        include=["code_interpreter_call.outputs"],
    )
    assert first.status == "completed", first.error
    body = conforms(first)
    call = next(item for item in body["output"] if item["type"] == "code_interpreter_call")
    assert call["code"] == "y = 40\nprint(y + 2)"
    assert call["outputs"] == [{"type": "logs", "logs": "42\n"}]
    assert call["container_id"].startswith("cntr_")
    assert first.output_text == "Tool results: 42"

    second = client.responses.create(
        model="gpt-4o-mini", tools=[CODE_TOOL], input=ask("print(y * 2)"), previous_response_id=first.id
    )
    assert second.status == "completed", second.error
    later = next(item for item in conforms(second)["output"] if item["type"] == "code_interpreter_call")
    assert later["container_id"] == call["container_id"]  # one session for the chain
    assert later["outputs"] is None  # not asked for with `include`
    assert second.output_text == "Tool results: 80"


def test_a_streamed_response_shows_the_code_interpreter_events_in_order(api_stack):
    events = events_of(api_stack.base_url, {"model": "gpt-4o-mini", "tools": [CODE_TOOL], "input": ask("print('hi')")})
    kinds = [e["type"] for e in events]
    code = [k for k in kinds if "code_interpreter" in k]
    assert code[0] == "response.code_interpreter_call.in_progress"
    assert code[-3:] == [
        "response.code_interpreter_call_code.done",
        "response.code_interpreter_call.interpreting",
        "response.code_interpreter_call.completed",
    ]
    assert "response.code_interpreter_call_code.delta" in code
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.code_interpreter_call_code.delta")
    done = next(e for e in events if e["type"] == "response.code_interpreter_call_code.done")
    assert deltas == done["code"] == "print('hi')"
    item_done = next(
        e for e in events if e["type"] == "response.output_item.done" and e["item"]["type"] == "code_interpreter_call"
    )
    assert item_done["item"]["status"] == "completed"
    assert kinds[-1] == "response.completed"
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["code_interpreter_call", "message"]


def test_a_containers_memory_limit_bounds_its_kernel(client):
    """1.2 GB fits the operator's default 2 GiB; `memory_limit: 1g` makes it a MemoryError."""
    code = "b = bytearray(1200 * 2**20)\nprint(len(b) >> 20)"
    roomy = client.responses.create(model="gpt-4o-mini", tools=[CODE_TOOL], input=ask(code))
    assert roomy.output_text == "Tool results: 1200"
    small = {"type": "code_interpreter", "container": {"type": "auto", "memory_limit": "1g"}}
    tight = client.responses.create(model="gpt-4o-mini", tools=[small], input=ask(code))
    assert "MemoryError" in tight.output_text


def test_a_containers_files_are_in_the_working_directory(client):
    uploaded = client.files.create(file=("scores.csv", io.BytesIO(b"s\n7\n9\n")), purpose="user_data")
    response = client.responses.create(
        model="gpt-4o-mini",
        tools=[{"type": "code_interpreter", "container": {"type": "auto", "file_ids": [uploaded.id]}}],
        input=ask("import pandas as pd\nprint(pd.read_csv('/mnt/data/scores.csv')['s'].sum())"),
    )
    assert response.status == "completed", response.error
    assert response.output_text == "Tool results: 16"


@pytest.mark.parametrize(
    ("tool", "status", "param"),
    [
        ({"type": "code_interpreter", "container": "cntr_abc"}, 400, "tools[0].container"),
        ({"type": "code_interpreter", "container": {"type": "manual"}}, 400, "tools[0].container"),
        (
            {"type": "code_interpreter", "container": {"type": "auto", "memory_limit": "3g"}},
            400,
            "tools[0].container.memory_limit",
        ),
        ({"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["file-nope"]}}, 404, None),
    ],
)
def test_bad_code_interpreter_tools_are_refused(api_stack, tool, status, param):
    reply = httpx.post(
        f"{api_stack.base_url}/v1/responses", json={"model": "gpt-4o-mini", "tools": [tool], "input": "hi"}, timeout=30
    )
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    if param is not None:
        assert error["param"] == param
    assert "Traceback" not in reply.text


def test_a_manifests_sandboxing_bounds_its_calls(client, api_stack):
    from ossabus.registry.convert_openai import assistant_id_for

    manifest = (
        "apiVersion: ossa/v0.5.0\nkind: Agent\nmetadata: {name: hasty-analyst}\n"
        "spec:\n  role: You analyse quickly.\n  llm: {provider: openai, model: gpt-4o-mini}\n"
        "  security:\n    sandboxing: {max_execution_seconds: 2}\n"
        "extensions:\n  openai_assistants:\n    tools: [{type: code_interpreter}]\n"
    )
    register_manifest(api_stack.base_url, manifest)
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant_id_for("hasty-analyst"),
        thread={"messages": [{"role": "user", "content": ask("import time\ntime.sleep(10)\nprint('late')")}]},
    )
    assert run.status == "completed", run.last_error
    [call] = code_calls(client, run.thread_id, run.id)
    assert "TimeoutError: the call ran longer than 2 s" in call.code_interpreter.outputs[0].logs


def test_a_file_the_code_wrote_is_cited_from_its_container(client, api_stack):
    response = client.responses.create(
        model="gpt-4o-mini",
        tools=[CODE_TOOL],
        input=ask("open('report.txt', 'w').write('all good')\nprint('written')"),
    )
    assert response.status == "completed", response.error
    body = conforms(response)
    message = next(item for item in body["output"] if item["type"] == "message")
    [citation] = message["content"][0]["annotations"]
    assert citation["type"] == "container_file_citation"
    assert citation["filename"] == "report.txt"
    call = next(item for item in body["output"] if item["type"] == "code_interpreter_call")
    assert citation["container_id"] == call["container_id"]
    text = message["content"][0]["text"]
    assert text[citation["start_index"] : citation["end_index"]].endswith("/mnt/data/report.txt")
    assert client.files.content(citation["file_id"]).read() == b"all good"


def test_the_bundled_code_assistant_runs_code_though_its_example_files_do_not_exist(client, api_stack):
    """Seed 002's first example: an assistant with the interpreter whose tool_resources name example
    files (file-abc123): its code runs, and the model is told those files are not there."""
    manifest = (REPO / "manifests" / "code-assistant.ossa.yaml").read_text()
    register_manifest(api_stack.base_url, manifest)

    run = client.beta.threads.create_and_run_poll(
        assistant_id="asst_abc123xyz",  # the id its extensions.openai_assistants declares
        thread={"messages": [{"role": "user", "content": ask("print(sum(range(10)))")}]},
    )
    assert run.status == "completed", run.last_error
    [call] = code_calls(client, run.thread_id, run.id)
    assert call.code_interpreter.outputs[0].logs == "45\n"
    answer = client.beta.threads.messages.list(run.thread_id).data[0].content[0].text.value
    assert "file file-abc123 is not available" in answer
