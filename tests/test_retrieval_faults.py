"""Indexing survives its faults: a process killed (SIGKILL) while it embeds a file leaves the file
to the next process, which finishes it once; an index outlives restarts; an embedding provider that
keeps failing part of a file fails that file, with nothing of it searchable, and its neighbours
are indexed. Each stack is its own `ossabus up` process on the shared test NATS."""

import asyncio
import io
import signal
import time

import openai
import pytest
from openai import OpenAI

from conftest import eventually, free_port, llm_env, reset_jetstream, start_stack

ACK_WAIT_S = 3


def sdk(stack) -> OpenAI:
    return OpenAI(base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def wait_for_file(client: OpenAI, store_id: str, file_id: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        found = client.vector_stores.files.retrieve(file_id, vector_store_id=store_id)
        if found.status != "in_progress":
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


@pytest.fixture
def stacks(nats_url, fake_llm, tmp_path):
    """Start stacks that share one data folder (the embedded index lives there), one at a time."""
    asyncio.run(reset_jetstream(nats_url))
    started = []
    env = {
        **llm_env(fake_llm),
        "OSSABUS_ACK_WAIT_S": str(ACK_WAIT_S),
        "OSSABUS_DATA_DIR": str(tmp_path / "data"),
    }

    def start(name: str):
        stack = start_stack(["up", "--nats-url", nats_url], tmp_path / f"{name}.log", free_port(), env=env)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()


def test_a_file_whose_indexing_process_is_killed_is_finished_by_the_next_one_once(stacks, fake_llm):
    first = stacks("first")
    client = sdk(first)
    text = "Kestrels hover above meadows hunting voles. [[slow:4]]"
    file_id = client.files.create(file=("kestrel.txt", io.BytesIO(text.encode())), purpose="assistants").id
    store = client.vector_stores.create(name="interrupted", file_ids=[file_id])
    deadline = time.monotonic() + 20
    while not any("Kestrels" in str(r.get("input")) for r in fake_llm.requests()):
        assert time.monotonic() < deadline, "the file was never sent to be embedded"
        time.sleep(0.1)
    first.process.send_signal(signal.SIGKILL)  # mid-embedding: nothing indexed, nothing acknowledged
    first.process.wait(10)

    second = stacks("second")
    client = sdk(second)
    done = wait_for_file(client, store.id, file_id)
    assert done.status == "completed", done.last_error
    hits = client.vector_stores.search(store.id, query="kestrels hunting voles", max_num_results=50).data
    assert [h.file_id for h in hits] == [file_id]  # one chunk, indexed once

    def logged() -> None:  # logged just after the file's record says completed
        assert f"indexed {file_id} into {store.id}" in second.logs()

    eventually(logged, timeout=10)

    # the index and the records outlive a restart
    assert second.stop() == 0, second.logs()
    third = sdk(stacks("third"))
    assert third.vector_stores.retrieve(store.id).file_counts.completed == 1
    again = third.vector_stores.search(store.id, query="kestrels hunting voles").data
    assert [h.file_id for h in again] == [file_id]


def test_an_embedding_provider_failing_part_of_a_file_fails_that_file_and_shows_none_of_it(stacks):
    client = sdk(stacks("only"))
    words = " ".join(f"meadow{i}" for i in range(7000))
    broken = f"Beginning about larks. {words} [[fail]]"  # the last chunk, in the second embedding batch
    fine = "Nightingales sing after dusk in the hedgerows."
    ids = [
        client.files.create(file=(name, io.BytesIO(body.encode())), purpose="assistants").id
        for name, body in (("long.txt", broken), ("fine.txt", fine))
    ]
    store = client.vector_stores.create(
        name="half broken",
        file_ids=ids,
        chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}},
    )
    failed = wait_for_file(client, store.id, ids[0], timeout=90)
    assert failed.status == "failed"
    assert failed.last_error.code == "server_error"
    assert "could not be embedded" in failed.last_error.message
    assert wait_for_file(client, store.id, ids[1]).status == "completed"
    hits = client.vector_stores.search(store.id, query="beginning about larks meadow1", max_num_results=50).data
    assert ids[0] not in {h.file_id for h in hits}  # none of its first, embedded, batch is visible
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(store.id, query="   ")
