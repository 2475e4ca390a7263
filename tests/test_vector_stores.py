"""Vector stores through the `openai` SDK: create with files, upload_and_poll, statuses and counts,
search (hybrid and dense, attribute filters, thresholds), failures per file, removal, and another
project's store. Embeddings come from the fake upstream (lexical, so retrieval is meaningful)."""

import asyncio
import io
import json
import time

import nats
import openai
import pytest
from openai import OpenAI

from ossabus.contracts import subjects

from openapi_check import openapi_errors

DOCS = {
    "solar.txt": "Solar panels turn sunlight into electricity. Photovoltaic cells on the roof feed the grid.",
    "bread.md": "# Baking bread\n\nKnead the dough, let the yeast rise overnight, bake the loaf at 230 degrees.",
    "whales.txt": "Blue whales are the largest animals; they eat krill and sing across the ocean.",
}


@pytest.fixture(scope="module")
def client(api_stack) -> OpenAI:
    return OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def upload(client: OpenAI, name: str, data: bytes) -> str:
    return client.files.create(file=(name, io.BytesIO(data)), purpose="assistants").id


def wait_done(client: OpenAI, store_id: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        store = client.vector_stores.retrieve(store_id)
        if store.status != "in_progress":
            return store
        assert time.monotonic() < deadline, store
        time.sleep(0.1)


@pytest.fixture(scope="module")
def library(client):
    ids = {name: upload(client, name, text.encode()) for name, text in DOCS.items()}
    store = client.vector_stores.create(name="library", file_ids=list(ids.values()), metadata={"team": "docs"})
    assert store.status == "in_progress"
    done = wait_done(client, store.id)
    return done, ids


def test_a_store_indexes_its_files_and_counts_them(client, library):
    store, ids = library
    body = store.model_dump(mode="json", exclude_unset=True)
    assert openapi_errors(body, "VectorStoreObject") == []
    assert store.status == "completed"
    assert store.file_counts.completed == 3
    assert store.file_counts.total == 3
    assert store.usage_bytes == sum(len(t.encode()) for t in DOCS.values())
    files = client.vector_stores.files.list(store.id, filter="completed")
    assert sorted(f.id for f in files.data) == sorted(ids.values())


def test_search_finds_the_document_about_the_query(client, library):
    store, ids = library
    for ranker in ("auto", "none"):
        found = client.vector_stores.search(
            store.id, query="how do photovoltaic solar panels make electricity", ranking_options={"ranker": ranker}
        )
        assert found.data[0].file_id == ids["solar.txt"], ranker
        assert found.data[0].filename == "solar.txt"
        assert "sunlight" in found.data[0].content[0].text
    whales = client.vector_stores.search(store.id, query="krill eating whales", max_num_results=1)
    assert [hit.file_id for hit in whales.data] == [ids["whales.txt"]]


def test_attributes_filter_the_search(client):
    store = client.vector_stores.create(name="filtered")
    for year, text in ((2023, "quarterly report on revenue growth"), (2025, "quarterly report on revenue decline")):
        file_id = upload(client, f"report-{year}.txt", text.encode())
        client.vector_stores.files.create(store.id, file_id=file_id, attributes={"year": year, "kind": "report"})
    wait_done(client, store.id)
    recent = client.vector_stores.search(
        store.id, query="quarterly revenue report", filters={"type": "gte", "key": "year", "value": 2024}
    )
    assert [hit.attributes["year"] for hit in recent.data] == [2025]
    both = client.vector_stores.search(
        store.id,
        query="quarterly revenue report",
        filters={"type": "and", "filters": [{"type": "eq", "key": "kind", "value": "report"}]},
    )
    assert sorted(hit.attributes["year"] for hit in both.data) == [2023, 2025]


def test_a_bad_filter_is_a_400_even_before_anything_is_indexed(client):
    store = client.vector_stores.create(name="empty")
    with pytest.raises(openai.BadRequestError) as refused:
        client.vector_stores.search(store.id, query="x", filters={"type": "like", "key": "a", "value": 1})
    assert refused.value.body["param"] == "filters"


def test_upload_and_poll(client):
    store = client.vector_stores.create(name="polled")
    done = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("faq.txt", io.BytesIO(b"Opening hours are nine to five on weekdays."))
    )
    assert done.status == "completed"
    found = client.vector_stores.search(store.id, query="opening hours weekdays")
    assert found.data[0].file_id == done.id


def test_a_file_that_cannot_be_read_fails_alone(client):
    store = client.vector_stores.create(name="mixed")
    good = upload(client, "good.txt", b"readable words about gardening and tomatoes")
    bad = upload(client, "junk.bin", bytes(range(256)) * 8)
    empty = upload(client, "empty.pdf", b"%PDF")
    for file_id in (good, bad, empty):
        client.vector_stores.files.create(store.id, file_id=file_id)
    done = wait_done(client, store.id)
    assert (done.file_counts.completed, done.file_counts.failed) == (1, 2)
    failed = {f.id: f.last_error for f in client.vector_stores.files.list(store.id, filter="failed").data}
    assert failed[bad].code == "unsupported_file"
    assert failed[empty].code in ("unsupported_file", "invalid_file")
    assert [hit.file_id for hit in client.vector_stores.search(store.id, query="tomatoes garden").data] == [good]


def test_removing_a_file_removes_it_from_search(client):
    store = client.vector_stores.create(name="removal")
    keep = upload(client, "keep.txt", b"volcano eruptions and lava flows")
    drop = upload(client, "drop.txt", b"volcano ash clouds over the airport")
    for file_id in (keep, drop):
        client.vector_stores.files.create(store.id, file_id=file_id)
    wait_done(client, store.id)
    assert client.vector_stores.files.delete(file_id=drop, vector_store_id=store.id).deleted
    found = client.vector_stores.search(store.id, query="volcano ash airport")
    assert [hit.file_id for hit in found.data] == [keep]
    assert client.vector_stores.delete(store.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0}}},
         "chunking_strategy.static.max_chunk_size_tokens"),
        ({"file_ids": ["file-doesnotexist"]}, "file_id"),
        ({"expires_after": {"anchor": "created_at", "days": 1}}, "expires_after"),
    ],
)  # fmt: skip
def test_bad_stores_are_refused_and_nothing_is_made(client, body, param):
    before = len(client.vector_stores.list(limit=100).data)
    with pytest.raises(openai.APIStatusError) as refused:
        client.vector_stores.create(name="bad", **body)
    assert refused.value.status_code in (400, 404)
    assert param in (refused.value.body.get("param") or "")
    assert len(client.vector_stores.list(limit=100).data) == before


def test_file_batches_upload_and_poll_then_list_the_batch_files(client):
    store = client.vector_stores.create(name="batched")
    earlier = upload(client, "earlier.txt", b"Lighthouses guide ships along rocky coasts at night.")
    batch = client.vector_stores.file_batches.upload_and_poll(
        store.id,
        files=[
            ("tea.txt", io.BytesIO(b"Green tea is steeped at eighty degrees for two minutes.")),
            ("bikes.txt", io.BytesIO(b"Bicycle chains need oil every few hundred kilometres.")),
        ],
        file_ids=[earlier],
    )
    assert batch.status == "completed"
    assert (batch.file_counts.completed, batch.file_counts.total) == (3, 3)
    raw = json.loads(
        client.vector_stores.file_batches.with_raw_response.retrieve(batch.id, vector_store_id=store.id).text
    )
    assert openapi_errors(raw, "VectorStoreFileBatchObject") == [], raw
    listed = client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, filter="completed")
    assert earlier in {f.id for f in listed.data}
    assert len(listed.data) == 3
    found = client.vector_stores.search(store.id, query="steeping green tea", max_num_results=1)
    assert found.data[0].filename == "tea.txt"


def test_a_batch_gives_each_file_its_own_attributes_and_refuses_a_foreign_file_before_writing(client):
    store = client.vector_stores.create(name="batched attributes")
    a = upload(client, "a.txt", b"Alpine lakes freeze in winter.")
    b = upload(client, "b.txt", b"Desert dunes shift with the wind.")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.file_batches.create(store.id, file_ids=[a, "file-doesnotexist"])
    assert client.vector_stores.files.list(store.id).data == []  # nothing attached by the refused batch
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.file_batches.create(store.id, file_ids=[a], files=[{"file_id": b}])
    batch = client.vector_stores.file_batches.create(
        store.id,
        files=[{"file_id": a, "attributes": {"biome": "alpine"}}, {"file_id": b, "attributes": {"biome": "desert"}}],
    )
    done = client.vector_stores.file_batches.poll(batch.id, vector_store_id=store.id)
    assert done.file_counts.completed == 2
    hits = client.vector_stores.search(
        store.id, query="landscape", filters={"type": "eq", "key": "biome", "value": "desert"}
    ).data
    assert [h.file_id for h in hits] == [b]


def test_cancelling_a_batch_cancels_what_is_not_indexed_and_leaves_nothing_searchable(client):
    store = client.vector_stores.create(name="cancelled batch")
    slow = upload(client, "slow.txt", b"Volcanoes erupt molten basalt. [[slow:3]]")
    batch = client.vector_stores.file_batches.create(store.id, file_ids=[slow])
    cancelled = client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelled.status == "cancelled"
    assert cancelled.file_counts.cancelled == 1
    time.sleep(4)  # the worker finishes embedding the cancelled file meanwhile
    assert client.vector_stores.files.retrieve(slow, vector_store_id=store.id).status == "cancelled"
    assert client.vector_stores.search(store.id, query="volcanoes basalt").data == []


def test_a_store_files_content_is_its_extracted_text(client, library):
    store, ids = library
    page = client.vector_stores.files.content(ids["bread.md"], vector_store_id=store.id)
    texts = [part.text for part in page]
    assert "Knead the dough" in "".join(texts)
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.content("file-doesnotexist", vector_store_id=store.id)


async def age_store(nats_url: str, store_id: str, seconds: int) -> None:
    """Move a store's clock back by `seconds` (written behind the API's back: nobody waits a day)."""
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().key_value(subjects.VECTOR_STORES_BUCKET)
        record = json.loads((await kv.get(store_id)).value)
        for field in ("created_at", "last_active_at", "expires_at"):
            record[field] -= seconds
        await kv.put(store_id, json.dumps(record).encode())
    finally:
        await nc.close()


def test_an_unused_store_expires_and_a_search_keeps_a_store_alive(client, nats_url):
    day = {"anchor": "last_active_at", "days": 1}
    idle = client.vector_stores.create(name="idle", expires_after=day)
    assert idle.expires_at == idle.last_active_at + 86400
    asyncio.run(age_store(nats_url, idle.id, 86400 + 60))
    assert client.vector_stores.retrieve(idle.id).status == "expired"
    with pytest.raises(openai.BadRequestError) as refused:
        client.vector_stores.search(idle.id, query="anything")
    assert "expired" in refused.value.message

    used = client.vector_stores.create(name="used", expires_after=day)
    asyncio.run(age_store(nats_url, used.id, 3600))
    before = client.vector_stores.retrieve(used.id)
    client.vector_stores.search(used.id, query="anything")
    after = client.vector_stores.retrieve(used.id)
    assert after.last_active_at >= before.last_active_at + 3600 - 5
    assert after.expires_at == after.last_active_at + 86400
    assert after.status == "completed"


def test_rewrite_query_asks_the_model_for_the_search_query(client, library, fake_llm):
    store, ids = library
    found = client.vector_stores.search(store.id, query="umm so what about solar panels?", rewrite_query=True)
    # the fake model answers "Echo: <the user's text>": that answer is what was searched
    assert found.search_query == ["Echo: umm so what about solar panels?"]
    assert found.data[0].file_id == ids["solar.txt"]
    asked = next(r for r in reversed(fake_llm.requests()) if "messages" in r)
    assert asked["model"] == "gpt-4o-mini"
    assert asked["messages"][0]["role"] == "system"
    assert "search query" in asked["messages"][0]["content"]
