"""OSSA <-> OpenAI Assistant (stable under round trip) and OSSA -> Vercel AI settings."""

import json

import pytest
import yaml

from ossabus.registry.catalog import documents_from_paths, validate_batch, validate_text
from ossabus.registry.convert_openai import assistant_id_for, from_assistant, to_assistant
from ossabus.registry.convert_vercel import to_vercel

from conftest import REPO, shared_path
from openapi_check import openapi_errors

SEEDS = sorted((REPO / "manifests").glob("*.yaml"))


def load(path):
    docs, _ = documents_from_paths([path])
    entry = validate_batch(docs).entries[0]
    assert entry.valid
    return entry.definition


def definition_of(manifest: dict, strict: bool = False):
    batch = validate_text(yaml.safe_dump(manifest), strict=strict, source="converted.yaml")
    assert batch.ok, [d.render() for d in batch.diagnostics]
    return batch.entries[0].definition


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
def test_ossa_to_assistant_to_ossa_to_assistant_is_stable(path):
    first = to_assistant(load(path), created_at=1700000000)
    second = to_assistant(definition_of(from_assistant(first.model_dump(mode="json"))), created_at=1700000000)
    assert second == first


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
def test_assistants_have_the_shape_openai_clients_expect(path):
    assistant = to_assistant(load(path), created_at=1700000000).model_dump(mode="json")
    assert openapi_errors(assistant, "AssistantObject") == []


ASSISTANTS = [
    {
        "id": "asst_abc123",
        "object": "assistant",
        "created_at": 1,
        "name": "Data Analyst",
        "description": None,
        "model": "gpt-4-turbo",
        "instructions": "You are a data analyst assistant.",
        "tools": [{"type": "code_interpreter"}],
        "metadata": {},
        "temperature": 0.2,
        "top_p": 1.0,
    },
    {
        "id": "asst_fn1",
        "object": "assistant",
        "created_at": 1,
        "name": "Stock Assistant",
        "description": "stocks",
        "model": "gpt-4o",
        "instructions": "Help with stock prices",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_stock_price",
                    "description": "Get a price",
                    "parameters": {
                        "type": "object",
                        "properties": {"symbol": {"type": "string"}},
                        "required": ["symbol"],
                    },
                    "strict": True,
                },
            },
            {"type": "file_search"},
        ],
        "tool_resources": {"file_search": {"vector_store_ids": ["vs_abc"]}},
        "metadata": {"team": "finance"},
        "response_format": {"type": "json_object"},
    },
    {
        "id": "asst_x",
        "object": "assistant",
        "created_at": 1,
        "name": None,
        "description": None,
        "model": "anthropic/claude-3-5-sonnet",
        "instructions": None,
        "tools": [],
        "metadata": {},
    },
]


@pytest.mark.parametrize("assistant", ASSISTANTS, ids=lambda a: a["id"])
def test_assistant_to_ossa_to_assistant_gives_the_same_assistant(assistant):
    manifest = from_assistant(assistant)
    back = to_assistant(definition_of(manifest, strict=True), created_at=assistant["created_at"])
    expected = {
        **assistant,
        "tool_resources": assistant.get("tool_resources"),
        "response_format": assistant.get("response_format"),
        "temperature": assistant.get("temperature"),
        "top_p": assistant.get("top_p"),
    }
    got = back.model_dump(mode="json")
    if assistant["name"] is None:  # a nameless assistant is named after its id, which it keeps
        assert got.pop("name") == "assistant-x"
        expected.pop("name")
    assert got == expected


def test_manifests_without_an_assistant_id_get_a_stable_one():
    manifest = from_assistant({**ASSISTANTS[0], "id": "not-an-openai-id"})
    assert "assistant_id" not in manifest["extensions"]["openai_assistants"]
    assistant = to_assistant(definition_of(manifest), created_at=1)
    assert assistant.id == assistant_id_for("data-analyst")
    assert assistant.name == "Data Analyst"


def test_imported_manifests_are_strictly_valid_ossa_0_3_4():
    manifest = from_assistant(ASSISTANTS[1])
    assert manifest["apiVersion"] == "ossa/v0.3.4"
    assert manifest["metadata"]["name"] == "stock-assistant"
    assert manifest["spec"]["capabilities"] == ["retrieval"]
    assert manifest["extensions"]["openai_assistants"]["assistant_id"] == "asst_fn1"
    definition_of(manifest, strict=True)


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
def test_vercel_settings_are_a_valid_vercel_ai_extension(path):
    import jsonschema

    schema = json.loads(shared_path("ossa", "schemas", "ossa-0.3.4.schema.json").read_text())
    wrapper = {**schema, "$ref": "#/definitions/VercelAIExtension"}
    wrapper.pop("required", None)
    wrapper.pop("properties", None)
    wrapper.pop("allOf", None)
    settings = to_vercel(load(path))
    errors = [e.message for e in jsonschema.Draft7Validator(wrapper).iter_errors(settings["extension"])]
    assert errors == []


def test_vercel_settings_carry_provider_tools_and_call_settings():
    settings = to_vercel(load(REPO / "manifests" / "customer-support-agent.ossa.yaml"))
    ext = settings["extension"]
    assert ext["provider"] == {"name": "anthropic", "model": "claude-3-5-sonnet", "api_key_env": "ANTHROPIC_API_KEY"}
    assert ext["stream_protocol"] == "data"
    assert ext["tool_calling"]["max_steps"] == 10
    assert [(t["name"], t["confirmation"]) for t in ext["tool_calling"]["tools"]] == [
        ("lookup_order", False),
        ("initiate_return", True),
    ]
    assert settings["call_settings"]["system"].startswith("You are a helpful customer support agent")
    assert settings["call_settings"]["temperature"] == 0.7
    task = to_vercel(load(REPO / "manifests" / "email-generator.ossa.yaml"))["extension"]
    assert task["hooks"]["use_completion"]["enabled"] is True
    assert task["output_schema"]["schema"]["properties"]["email_draft"] == {"type": "string"}
