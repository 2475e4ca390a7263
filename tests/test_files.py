"""The Files API through the `openai` SDK: upload (multipart), list, retrieve, content, delete,
size limit and expiry; contents in the JetStream Object Store."""

import io
import time

import httpx
import openai
import pytest
from openai import OpenAI

from openapi_check import openapi_errors


@pytest.fixture(scope="module")
def client(api_stack) -> OpenAI:
    return OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_a_file_goes_up_and_comes_back_byte_for_byte(client):
    data = bytes(range(256)) * 4000  # ~1 MB, more than one object store chunk, every byte value
    uploaded = client.files.create(file=("notes.bin", io.BytesIO(data)), purpose="assistants")
    assert openapi_errors(uploaded.model_dump(mode="json", exclude_unset=True), "OpenAIFile") == []
    assert (uploaded.filename, uploaded.bytes, uploaded.purpose) == ("notes.bin", len(data), "assistants")
    assert uploaded.id.startswith("file-")
    assert client.files.retrieve(uploaded.id).bytes == len(data)
    assert client.files.content(uploaded.id).read() == data
    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(uploaded.id)


def test_files_are_listed_by_purpose_and_in_pages(client):
    made = [
        client.files.create(file=(f"doc{i}.txt", io.BytesIO(f"text {i}".encode())), purpose="user_data").id
        for i in range(3)
    ]
    listed = [f.id for f in client.files.list(purpose="user_data", order="asc").data]
    assert listed[-3:] == made
    page = client.files.list(purpose="user_data", limit=1, order="asc", after=made[0])
    assert [f.id for f in page.data] == [made[1]]
    assert page.has_more
    assert not [f for f in client.files.list(purpose="batch").data if f.id in made]


def test_a_file_over_the_limit_is_a_413_and_nothing_is_kept(client, api_stack):
    before = {f.id for f in client.files.list().data}
    with pytest.raises(openai.APIStatusError) as refused:
        client.files.create(file=("big.bin", io.BytesIO(b"x" * (4 * 1024 * 1024 + 1))), purpose="assistants")
    assert refused.value.status_code == 413
    assert refused.value.body["code"] == "file_too_large"
    assert {f.id for f in client.files.list().data} == before


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"purpose": "nonsense"}, "purpose"),
        (
            {"purpose": "assistants", "expires_after[anchor]": "created_at", "expires_after[seconds]": "5"},
            "expires_after[seconds]",
        ),
        ({}, "purpose"),
    ],
)
def test_bad_uploads_are_400s(api_stack, fields, param):
    reply = httpx.post(f"{api_stack.base_url}/v1/files", data=fields, files={"file": ("a.txt", b"abc")}, timeout=30)
    assert reply.status_code == 400, reply.text
    assert param in (reply.json()["error"]["param"] or "")


def test_an_expiring_file_says_when(client):
    uploaded = client.files.create(
        file=("soon.txt", io.BytesIO(b"gone later")),
        purpose="assistants",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert uploaded.expires_at == uploaded.created_at + 3600
    assert uploaded.expires_at > time.time()
