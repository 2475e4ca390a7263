"""file_search in Assistants runs, through the unmodified `openai` SDK: an assistant whose
tool_resources name a vector store answers from an uploaded document, with a `file_search` step
(results and, when asked for, their content) and `file_citation` annotations; the thread's own
stores count too; a store still indexing is waited for; another project's store is not searched.

The fake upstream's embeddings are lexical (hashed bag of words), so which passage is found is
meaningful; its model calls `file_search` when told to (`[[call:file_search {...}]]`) and, given
the results, repeats them, markers included, as a model citing its sources does."""

import io
import json
import time

import httpx
import openai
import pytest
from openai import OpenAI

from openapi_check import openapi_errors

MANUAL = (
    "Falcon drill manual. The Falcon drill warranty lasts 24 months from the date of purchase. "
    "Charge the battery for two hours before first use."
)
RECIPES = "Pancakes need flour, milk and eggs. Whisk them and fry in butter until golden."
ASK = 'What is the warranty? [[call:file_search {"query": "Falcon drill warranty months"}]]'


@pytest.fixture(scope="module")
def client(api_stack) -> OpenAI:
    return OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=90)


def upload(client: OpenAI, name: str, text: str) -> str:
    return client.files.create(file=(name, io.BytesIO(text.encode())), purpose="assistants").id


def indexed_store(client: OpenAI, name: str, file_ids: list[str]):
    store = client.vector_stores.create(name=name, file_ids=file_ids)
    deadline = time.monotonic() + 60
    while store.status == "in_progress":
        assert time.monotonic() < deadline, store
        time.sleep(0.1)
        store = client.vector_stores.retrieve(store.id)
    return store


@pytest.fixture(scope="module")
def docs(client):
    ids = {"manual.txt": upload(client, "manual.txt", MANUAL), "recipes.txt": upload(client, "recipes.txt", RECIPES)}
    store = indexed_store(client, "product docs", list(ids.values()))
    assert store.file_counts.completed == 2, store
    return store, ids


@pytest.fixture(scope="module")
def assistant(client, docs):
    store, _ = docs
    return client.beta.assistants.create(
        model="gpt-4o-mini",
        name="support-with-docs",
        instructions="Answer from the documentation.",
        tools=[{"type": "file_search", "file_search": {"max_num_results": 3}}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )


def test_an_assistant_answers_from_its_vector_store_and_cites_the_file(client, docs, assistant, fake_llm):
    _, ids = docs
    assert assistant.tools[0].type == "file_search"
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": ASK}]}
    )
    assert run.status == "completed", run.last_error
    answer = client.beta.threads.messages.list(run.thread_id).data[0]
    text = answer.content[0].text
    assert "24 months" in text.value
    citations = [a for a in text.annotations if a.type == "file_citation"]
    assert citations, text
    assert citations[0].file_citation.file_id == ids["manual.txt"]
    assert text.value[citations[0].start_index : citations[0].end_index] == citations[0].text
    assert citations[0].text.startswith("【0:0†manual.txt")

    # the model saw a function `file_search({"query"})`, and the passage came back as its result
    asked = [r for r in fake_llm.requests() if "Falcon drill warranty" in json.dumps(r.get("messages", ""))]
    offered = asked[0]["tools"]
    schema = next(t["function"] for t in offered if t["function"]["name"] == "file_search")
    assert schema["parameters"]["required"] == ["query"]
    tool_messages = [m for m in asked[-1]["messages"] if m["role"] == "tool"]
    assert "warranty lasts 24 months" in tool_messages[0]["content"]


def test_the_step_shows_a_file_search_call_with_its_results(client, assistant, docs):
    _, ids = docs
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": ASK}]}
    )
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc").data
    call = next(s for s in steps if s.type == "tool_calls").step_details.tool_calls[0]
    assert call.type == "file_search"
    assert call.file_search.ranking_options.ranker == "default_2024_08_21"
    assert call.file_search.results[0].file_id == ids["manual.txt"]
    assert call.file_search.results[0].file_name == "manual.txt"
    assert len(call.file_search.results) <= 3  # the assistant's max_num_results
    assert call.file_search.results[0].content is None  # only with include[]

    step_id = next(s.id for s in steps if s.type == "tool_calls")
    full = client.beta.threads.runs.steps.retrieve(
        step_id,
        thread_id=run.thread_id,
        run_id=run.id,
        include=["step_details.tool_calls[*].file_search.results[*].content"],
    )
    content = full.step_details.tool_calls[0].file_search.results[0].content
    assert "24 months" in content[0].text
    raw = full.model_dump(mode="json", exclude_unset=True)
    assert openapi_errors(raw, "RunStepObject") == [], raw


def test_the_threads_own_vector_store_is_searched_too(client, assistant):
    own = upload(client, "policy.txt", "Our refund policy: unopened items are refunded within 30 days.")
    thread_store = indexed_store(client, "thread docs", [own])
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": 'Refunds? [[call:file_search {"query": "refund policy unopened items"}]]'}
        ],
        tool_resources={"file_search": {"vector_store_ids": [thread_store.id]}},
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    text = client.beta.threads.messages.list(thread.id).data[0].content[0].text
    assert "refunded within 30 days" in text.value
    assert {a.file_citation.file_id for a in text.annotations} >= {own}


def test_a_run_waits_for_a_store_that_is_still_indexing(client):
    slow = upload(client, "late.txt", "The launch code word is heliotrope. [[slow:2]]")
    store = client.vector_stores.create(name="still indexing", file_ids=[slow])
    assert store.status == "in_progress"
    assistant = client.beta.assistants.create(
        model="gpt-4o-mini",
        name="waits-for-index",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    started = time.monotonic()
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": 'Code? [[call:file_search {"query": "launch code word"}]]'}]},
    )
    assert run.status == "completed", run.last_error
    assert "heliotrope" in client.beta.threads.messages.list(run.thread_id).data[0].content[0].text.value
    assert time.monotonic() - started >= 1.5  # it waited for the embedding that took 2 s


def test_a_query_the_store_cannot_answer_tells_the_model_so(client, assistant):
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": '[[call:file_search {"query": ""}]]'}]},
    )
    assert run.status == "completed", run.last_error
    text = client.beta.threads.messages.list(run.thread_id).data[0].content[0].text
    assert "invalid_arguments" in text.value
    assert text.annotations == []


# --- Responses -----------------------------------------------------------------------------------------


def test_responses_file_search_gives_a_file_search_call_item_and_cited_text(client, docs):
    store, ids = docs
    response = client.responses.create(
        model="gpt-4o-mini",
        input=ASK,
        tools=[{"type": "file_search", "vector_store_ids": [store.id], "max_num_results": 2}],
        include=["file_search_call.results"],
    )
    assert response.status == "completed", response.error
    kinds = [item.type for item in response.output]
    assert kinds == ["file_search_call", "message"], kinds
    search = response.output[0]
    assert search.status == "completed"
    assert search.queries == ["Falcon drill warranty months"]
    assert search.results[0].file_id == ids["manual.txt"]
    assert "24 months" in search.results[0].text
    assert len(search.results) <= 2
    text = response.output[1].content[0]
    assert "24 months" in text.text
    cited = [a for a in text.annotations if a.type == "file_citation"]
    assert (cited[0].file_id, cited[0].filename) == (ids["manual.txt"], "manual.txt")
    raw = json.loads(client.responses.with_raw_response.retrieve(response.id).text)
    assert openapi_errors(raw, "Response") == [], raw
    assert raw["output"][0]["results"] is None  # results only with include
    again = client.responses.retrieve(response.id, include=["file_search_call.results"])
    assert again.output[0].results[0].file_id == ids["manual.txt"]


def test_responses_file_search_streams_its_events(client, docs):
    store, _ = docs
    with client.responses.stream(
        model="gpt-4o-mini", input=ASK, tools=[{"type": "file_search", "vector_store_ids": [store.id]}]
    ) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    searched = [t for t in types if t.startswith("response.file_search_call.")]
    assert searched == [
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
    ]
    assert types.index("response.file_search_call.completed") < types.index("response.output_text.delta")
    assert final.output[0].type == "file_search_call"


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        ({"type": "file_search"}, "tools[0].vector_store_ids"),
        ({"type": "file_search", "vector_store_ids": []}, "tools[0].vector_store_ids"),
        ({"type": "file_search", "vector_store_ids": ["vs_a"], "max_num_results": 0}, "tools[0].max_num_results"),
        ({"type": "file_search", "vector_store_ids": ["vs_a"], "filters": "x"}, "tools[0].filters"),
    ],
)
def test_a_bad_file_search_tool_is_a_400_naming_the_field(client, tool, param):
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="gpt-4o-mini", input="hi", tools=[tool])
    assert refused.value.body["param"] == param


# --- files given to threads --------------------------------------------------------------------------


def test_a_message_attachment_for_file_search_goes_into_the_threads_own_store(client, assistant):
    memo = upload(client, "memo.txt", "Memo: the offsite moves to the Lisbon office in March.")
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(
        thread.id,
        role="user",
        content='Where is the offsite? [[call:file_search {"query": "offsite office"}]]',
        attachments=[{"file_id": memo, "tools": [{"type": "file_search"}]}],
    )
    ids = client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids
    assert len(ids) == 1
    store = client.vector_stores.retrieve(ids[0])
    assert store.name == f"thread {thread.id}"
    assert store.expires_after.days == 7
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    text = client.beta.threads.messages.list(thread.id).data[0].content[0].text
    assert "Lisbon office" in text.value
    assert memo in {a.file_citation.file_id for a in text.annotations}
    # a second attachment joins the same store
    client.beta.threads.messages.create(
        thread.id, role="user", content="and this", attachments=[{"file_id": memo, "tools": [{"type": "file_search"}]}]
    )
    assert client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids == ids


def test_tool_resources_may_make_a_store_from_file_ids(client):
    guide = upload(client, "guide.txt", "Guide: the museum opens at ten and closes at six.")
    thread = client.beta.threads.create(tool_resources={"file_search": {"vector_stores": [{"file_ids": [guide]}]}})
    ids = thread.tool_resources.file_search.vector_store_ids
    assert len(ids) == 1
    assert [f.id for f in client.vector_stores.files.list(ids[0]).data] == [guide]


def test_a_bad_attachment_is_refused_before_anything_is_made(client):
    stores_before = len(client.vector_stores.list(limit=100).data)
    with pytest.raises(openai.NotFoundError) as missing:
        client.beta.threads.create(
            messages=[
                {
                    "role": "user",
                    "content": "x",
                    "attachments": [{"file_id": "file-doesnotexist", "tools": [{"type": "file_search"}]}],
                }
            ],
            tool_resources={"file_search": {"vector_stores": [{"file_ids": []}]}},
        )
    assert "file" in missing.value.body["param"]
    thread = client.beta.threads.create()
    with pytest.raises(openai.BadRequestError) as bad:
        client.beta.threads.messages.create(
            thread.id, role="user", content="x", attachments=[{"file_id": "file-x", "tools": [{"type": "browser"}]}]
        )
    assert bad.value.body["param"] == "attachments[0].tools"
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.create(tool_resources={"file_search": {"vector_store_ids": ["vs_doesnotexist"]}})
    assert len(client.vector_stores.list(limit=100).data) == stores_before
    assert client.beta.threads.messages.list(thread.id).data == []


AGENT_WITH_SOURCES = """\
apiVersion: ossa/v0.5
kind: Agent
metadata:
  name: docs-from-sources
  version: 1.0.0
spec:
  instructions: Answer from the product documentation.
  model: {provider: openai, model: fake-model}
  knowledge_sources:
    - {name: product-docs, type: vector_store, vector_store_id: STORE}
    - {name: papers, type: vector_store, provider: qdrant, config: {collection: papers, endpoint: "http://127.0.0.1:9"}}
"""


def test_a_manifests_knowledge_sources_are_searched_in_its_runs(client, docs, api_stack):
    """A vector store named by the manifest is searched in the agent's runs (Assistants and Responses); a
    Qdrant collection of its own is kept with a warning, never reached."""
    store, ids = docs
    manifest = AGENT_WITH_SOURCES.replace("STORE", store.id)
    yaml = {"content-type": "application/yaml"}
    checked = httpx.post(f"{api_stack.base_url}/v1/ossa/validate", content=manifest, headers=yaml, timeout=30).json()
    assert checked["valid"] is True, checked
    codes = {d["code"]: d["path"] for d in checked["warnings"]}
    assert codes["data_source.external"] == "$.spec.knowledge_sources[1]", checked
    reply = httpx.put(
        f"{api_stack.base_url}/v1/ossa/manifests/docs-from-sources", content=manifest, headers=yaml, timeout=30
    )
    assert reply.status_code in (200, 201), reply.text

    assistant = client.beta.assistants.retrieve("asst_docsXfromXsources")
    assert [t.type for t in assistant.tools] == ["file_search"]
    assert assistant.tool_resources.file_search.vector_store_ids == [store.id]
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": ASK}]}
    )
    assert run.status == "completed", run.last_error
    text = client.beta.threads.messages.list(run.thread_id).data[0].content[0].text
    assert "24 months" in text.value
    assert text.annotations[0].file_citation.file_id == ids["manual.txt"], (text, ids)

    response = client.responses.create(model="docs-from-sources", input=ASK, include=["file_search_call.results"])
    call = next(item for item in response.output if item.type == "file_search_call")
    assert call.results[0].file_id == ids["manual.txt"]
    assert "24 months" in response.output_text
