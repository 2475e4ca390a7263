"""Every official v0.4/v0.5 agent example that its schema accepts: through OpenAI's Assistant shape and
back, to Vercel AI settings, and re-written as v0.5, it means the same to the executor."""

import json

import jsonschema
import pytest
import yaml

from ossabus.registry.catalog import validate_batch
from ossabus.registry.convert_openai import from_assistant, to_assistant
from ossabus.registry.convert_vercel import to_vercel
from ossabus.registry.documents import parse_documents, read_manifest_file
from ossabus.registry.migrate import migrate
from ossabus.registry.schemas import choose_schema
from ossabus.registry.validation import validate_document

from conftest import REPO, SHARED


def schema(version: str) -> jsonschema.Draft7Validator:
    path = REPO / "contracts" / "ossa_schemas" / f"ossa-{version}.schema.json"
    return jsonschema.Draft7Validator(json.loads(path.read_text()))


def accepted_agents() -> list:
    found = []
    for path in sorted((SHARED / "ossa" / "examples-v0.4").iterdir()):
        for doc in read_manifest_file(path):
            if not isinstance(doc.data, dict) or doc.data.get("kind") != "Agent":
                continue
            choice = choose_schema(doc.data.get("apiVersion"))
            if choice is not None and schema(choice.version).is_valid(doc.data):
                found.append(pytest.param(doc, id=f"{path.name}[{doc.index}]"))
    return found


AGENTS = accepted_agents()


def definition_of(text: str):
    (entry,) = validate_batch(parse_documents(text, "converted.yaml", "yaml")).entries
    assert entry.definition is not None, [d.render() for d in entry.report.errors]
    return entry.definition


def test_there_are_many_accepted_examples():
    assert len(AGENTS) > 60


@pytest.mark.parametrize("doc", AGENTS)
def test_an_official_v0_4_agent_round_trips_through_the_openai_assistant_shape(doc):
    original = validate_document(doc, strict=False).definition
    assistant = to_assistant(original, created_at=1).model_dump(mode="json")
    back = definition_of(yaml.safe_dump(from_assistant(assistant)))
    assert back.system_prompt == original.system_prompt
    assert back.llm.litellm_model == original.llm.litellm_model
    # every tool is a function to OpenAI (its handler stays on the ossabus side); names and schemas survive
    offered = [t for t in original.tools if t.kind not in ("code_interpreter", "file_search")]
    assert [(t.function_name or t.name) for t in back.tools] == [(t.function_name or t.name) for t in offered]
    assert [t.parameters for t in back.tools] == [t.parameters for t in offered]


@pytest.mark.parametrize("doc", AGENTS)
def test_an_official_v0_4_agent_converts_to_vercel_ai_settings(doc):
    original = validate_document(doc, strict=False).definition
    settings = json.loads(json.dumps(to_vercel(original)))  # plain JSON, as the AI SDK takes it
    assert settings["name"] == original.name
    assert settings["call_settings"].get("system") == original.system_prompt
    assert settings["call_settings"].get("maxOutputTokens") == original.llm.max_tokens
    names = [t["name"] for t in settings["extension"]["tool_calling"]["tools"]]
    assert names == [
        (t.function_name or t.name) for t in original.tools if t.kind not in ("code_interpreter", "file_search")
    ]


@pytest.mark.parametrize("doc", AGENTS)
def test_an_official_v0_4_agent_rewritten_as_v0_5_validates_strictly_and_runs_the_same(doc):
    original = validate_document(doc, strict=False).definition
    upgraded = migrate(doc.data, original, "ossa/v0.5").manifest
    (entry,) = validate_batch(parse_documents(yaml.safe_dump(upgraded), "v05.yaml", "yaml"), strict=True).entries
    assert entry.report.valid, [d.render() for d in entry.report.errors]
    again = entry.definition
    assert again.system_prompt == original.system_prompt
    assert (again.llm.litellm_model, again.llm.temperature, again.llm.max_tokens) == (
        original.llm.litellm_model,
        original.llm.temperature,
        original.llm.max_tokens,
    )
    assert [t.name for t in again.tools] == [t.name for t in original.tools]


def on_the_fake_upstream(data: dict, fake_root: str) -> dict:
    """The manifest with its model pointed at the fake upstream (the examples name anthropic, google, ...);
    everything else, prompts and tools included, as the example has it, except the agent's own
    network_access: the fake is plain HTTP on localhost, which no example lists (and rightly refuses)."""
    import copy

    manifest = copy.deepcopy(data)
    spec = manifest["spec"]
    for holder in (manifest, spec):
        if isinstance(holder.get("security"), dict):
            holder["security"].pop("network_access", None)
    spec.pop("llm", None)
    spec["model"] = {"provider": "openai", "model": "fake-model", "base_url": fake_root, "api_key_env": "FAKE_LLM_KEY"}
    return manifest


def test_every_accepted_v0_4_agent_loads_and_answers_a_turn(api_stack, fake_llm):
    import httpx

    failures = []
    with httpx.Client(base_url=api_stack.base_url, timeout=60) as http:
        for param in AGENTS:
            (doc,) = param.values
            manifest = on_the_fake_upstream(doc.data, fake_llm.base_url.replace("127.0.0.1", "localhost"))
            name = manifest["metadata"]["name"]
            put = http.put(f"/v1/ossa/manifests/{name}", json=manifest)
            if put.status_code not in (200, 201):
                failures.append((param.id, "register", put.status_code, put.text[:300]))
                continue
            reply = http.post(
                "/v1/chat/completions", json={"model": name, "messages": [{"role": "user", "content": "ping"}]}
            )
            if reply.status_code != 200 or reply.json()["choices"][0]["message"]["content"] != "Echo: ping":
                failures.append((param.id, "turn", reply.status_code, reply.text[:300]))
    assert failures == []


@pytest.mark.parametrize("doc", AGENTS)
def test_an_official_v0_4_agent_round_trips_through_vercel_ai_settings(doc):
    from ossabus.registry.convert_vercel import from_vercel

    original = validate_document(doc, strict=False).definition
    settings = json.loads(json.dumps(to_vercel(original)))
    back = definition_of(yaml.safe_dump(from_vercel(settings)))
    assert back.system_prompt == original.system_prompt
    assert (back.llm.model, back.llm.temperature, back.llm.top_p, back.llm.max_tokens) == (
        original.llm.model,
        original.llm.temperature,
        original.llm.top_p,
        original.llm.max_tokens,
    )
    offered = [t for t in original.tools if t.kind not in ("code_interpreter", "file_search")]
    assert [t.name for t in back.tools] == [(t.function_name or t.name) for t in offered]
    assert [t.confirmation for t in back.tools] == [t.confirmation for t in offered]
    assert to_vercel(back) == settings  # stable: a second trip changes nothing
