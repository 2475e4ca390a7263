"""`/v1/embeddings` through the `openai` SDK (floats and its default base64), `dimensions`, usage,
LangChain's `OpenAIEmbeddings` on its defaults, and errors in OpenAI's shape."""

import math
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from openapi_check import openapi_errors


@pytest.fixture(scope="module")
def client(api_stack) -> OpenAI:
    return OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def test_embeddings_of_one_and_many_texts(client, fake_llm):
    one = client.embeddings.create(model="text-embedding-3-small", input="the cat sat", encoding_format="float")
    assert openapi_errors(one.model_dump(mode="json", exclude_unset=True), "CreateEmbeddingResponse") == []
    assert len(one.data[0].embedding) == 256
    many = client.embeddings.create(
        model="openai/text-embedding-3-small", input=["the cat sat", "a cat sat down", "stock prices fell"]
    )  # the SDK asks for base64 and decodes it
    vectors = [row.embedding for row in many.data]
    assert [row.index for row in many.data] == [0, 1, 2]
    assert vectors[0] == pytest.approx(one.data[0].embedding, abs=1e-6)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert many.usage.prompt_tokens == 3 + 4 + 3
    sent = fake_llm.requests()[-1]
    assert sent["_meta"]["path"] == "/v1/embeddings"


def test_dimensions_are_passed_on(client):
    reply = client.embeddings.create(model="text-embedding-3-small", input="short", dimensions=32)
    assert len(reply.data[0].embedding) == 32


@pytest.mark.parametrize(
    ("kwargs", "status", "param"),
    [
        ({"model": "text-embedding-3-small", "input": []}, 400, "input"),
        ({"model": "text-embedding-3-small", "input": [""]}, 400, "input"),
        ({"model": "echo-agent", "input": "x"}, 400, "model"),
        ({"model": "no-such-embedder", "input": "x"}, 404, "model"),
    ],
)
def test_bad_embedding_requests(client, kwargs, status, param):
    with pytest.raises(openai.APIStatusError) as refused:
        client.embeddings.create(**kwargs, encoding_format="float")
    assert refused.value.status_code == status
    assert param in (refused.value.body.get("param") or "")


def test_a_failing_provider_is_a_502_without_internals(client):
    with pytest.raises(openai.APIStatusError) as failed:
        client.embeddings.create(model="text-embedding-3-small", input="[[fail:500]] x", encoding_format="float")
    assert failed.value.status_code == 502
    assert "Traceback" not in str(failed.value.body)


def test_langchain_openai_embeddings_on_its_defaults(api_stack, monkeypatch):
    # LangChain tokenizes with tiktoken first; offline, tiktoken reads the encodings litellm ships
    import litellm

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(Path(litellm.__file__).parent / "litellm_core_utils" / "tokenizers"))
    from langchain_openai import OpenAIEmbeddings

    embedder = OpenAIEmbeddings(
        model="text-embedding-3-small", base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0
    )
    documents = embedder.embed_documents(["retrieval with any model", "something else entirely"])
    query = embedder.embed_query("retrieval with any model")
    assert len(documents) == 2
    assert len(query) == 256
    assert cosine(query, documents[0]) > cosine(query, documents[1])
