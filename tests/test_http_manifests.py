"""The registry over HTTP, against `ossabus up` in its own process, through a real socket."""

import json
import textwrap

import httpx
import pytest
import yaml

from conftest import REPO

SEED_NAMES = sorted(yaml.safe_load(p.read_text())["metadata"]["name"] for p in (REPO / "manifests").rglob("*.yaml"))


def manifest(name: str, prompt: str = "You help.") -> str:
    return textwrap.dedent(f"""\
        apiVersion: ossa/v0.3.4
        kind: Agent
        metadata:
          name: {name}
        spec:
          prompts: {{system: {prompt}}}
          llm: {{provider: anthropic, model: claude-3-5-haiku}}
        """)


@pytest.fixture(scope="module")
def http(stack):
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        yield client


YAML = {"content-type": "application/yaml"}


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None, param: str | None = None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    assert "Traceback" not in error["message"]
    if code:
        assert error["code"] == code
    if param:
        assert error["param"] == param
    assert response.headers["x-request-id"]


def all_names(http) -> list[str]:
    names, after = [], None
    while True:
        page = http.get("/v1/ossa/manifests", params={"limit": 100, **({"after": after} if after else {})}).json()
        names += [m["id"] for m in page["data"]]
        if not page["has_more"]:
            return names
        after = page["last_id"]


def test_health_and_readiness(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["manifests"]["count"] >= 15


def test_the_bundled_manifests_are_listed(http):
    page = http.get("/v1/ossa/manifests", params={"limit": 100}).json()
    assert page["object"] == "list"
    names = [m["id"] for m in page["data"] if m["source"] != "api"]
    assert names == SEED_NAMES
    assert len(names) == 19  # the 15 seed manifests, the v0.5 agents and workflow of manifests/v0.5
    first = page["data"][0]
    assert first["object"] == "ossa.manifest"
    assert {"kind", "api_version", "version", "created_at", "updated_at"} <= set(first)


def test_listing_paginates_like_openai(http):
    first = http.get("/v1/ossa/manifests", params={"limit": 4}).json()
    assert len(first["data"]) == 4
    assert first["has_more"] is True
    assert first["first_id"] == first["data"][0]["id"]
    second = http.get("/v1/ossa/manifests", params={"limit": 4, "after": first["last_id"]}).json()
    assert second["data"][0]["id"] > first["last_id"]
    back = http.get("/v1/ossa/manifests", params={"limit": 4, "before": second["first_id"]}).json()
    assert [m["id"] for m in back["data"]] == [m["id"] for m in first["data"]]
    desc = http.get("/v1/ossa/manifests", params={"limit": 2, "order": "desc"}).json()
    assert desc["data"][0]["id"] > desc["data"][1]["id"]
    tasks = http.get("/v1/ossa/manifests", params={"kind": "Task"}).json()
    assert [m["id"] for m in tasks["data"]] == ["email-generator"]


def test_create_read_replace_delete(http):
    created = http.post("/v1/ossa/manifests", content=manifest("http-agent"), headers=YAML)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["id"], body["version"], body["source"]) == ("http-agent", 1, "api")
    assert body["definition"]["llm"]["litellm_model"] == "anthropic/claude-3-5-haiku"
    assert "http-agent" in all_names(http)

    replaced = http.put("/v1/ossa/manifests/http-agent", content=manifest("http-agent", "New."), headers=YAML)
    assert replaced.status_code == 200
    assert replaced.json()["version"] == 2

    latest = http.get("/v1/ossa/manifests/http-agent").json()
    assert latest["manifest"]["spec"]["prompts"]["system"] == "New."
    v1 = http.get("/v1/ossa/manifests/http-agent", params={"version": 1, "format": "yaml"})
    assert v1.headers["content-type"].startswith("application/yaml")
    assert v1.text == manifest("http-agent")

    as_json = http.put(
        "/v1/ossa/manifests/json-agent",
        json=yaml.safe_load(manifest("json-agent")),
    )
    assert as_json.status_code == 201
    assert yaml.safe_load(http.get("/v1/ossa/manifests/json-agent", params={"format": "yaml"}).text) == yaml.safe_load(
        manifest("json-agent")
    )

    deleted = http.delete("/v1/ossa/manifests/http-agent")
    assert deleted.json() == {"id": "http-agent", "object": "ossa.manifest.deleted", "deleted": True}
    assert_openai_error(http.get("/v1/ossa/manifests/http-agent"), 404, "not_found")


def test_validate_endpoint_reports_both_modes(http):
    text = (REPO / "manifests" / "customer-support-agent.ossa.yaml").read_text()
    lenient = http.post("/v1/ossa/validate", content=text, headers=YAML).json()
    assert lenient["valid"] is True
    assert [w["path"] for w in lenient["warnings"]] == ["$.spec.tools[0]", "$.spec.tools[1]"]
    strict = http.post("/v1/ossa/validate", params={"strict": "true"}, content=text, headers=YAML).json()
    assert strict["valid"] is False
    assert [(e["path"], e["line"]) for e in strict["errors"]] == [("$.spec.tools[0]", 22), ("$.spec.tools[1]", 32)]


@pytest.mark.parametrize(
    ("content", "code", "param"),
    [
        ("apiVersion: ossa/v0.3.4\nkind: Agent\nmetadata: {name: [\n", "invalid_manifest", "$"),
        ("apiVersion: ossa/v7\nkind: Agent\nmetadata: {name: x}\nspec: {}\n", "invalid_manifest", "$.apiVersion"),
        ("apiVersion: ossa/v0.3.4\nkind: Gadget\nmetadata: {name: x}\nspec: {}\n", "invalid_manifest", "$.kind"),
        ("apiVersion: ossa/v0.3.4\nkind: Agent\nmetadata: {}\nspec: {}\n", "invalid_manifest", "$.metadata.name"),
        (
            "apiVersion: ossa/v0.3.4\nkind: Agent\nmetadata: {name: Not_DNS}\nspec: {}\n",
            "invalid_manifest",
            "$.metadata.name",
        ),
        (
            manifest("schema-bad").replace(
                "  llm:", "  capabilities:\n    - name: c\n      input_schema: {type: 7}\n  llm:"
            ),
            "invalid_manifest",
            "$.spec.capabilities[0].input_schema",
        ),
    ],
)
def test_bad_manifests_are_400_with_the_offending_path_and_nothing_stored(http, content, code, param):
    before = all_names(http)
    response = http.post("/v1/ossa/manifests", content=content, headers=YAML)
    assert_openai_error(response, 400, code, param)
    assert response.json()["error"]["diagnostics"]
    assert all_names(http) == before


def _chunked(data: bytes, piece: int = 64 * 1024):
    """A body sent in chunks with no Content-Length: the relay learns its size only by reading it."""
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


def test_bodies_past_their_paths_limit_are_413_declared_or_streamed_and_other_paths_keep_theirs(http):
    before = all_names(http)
    big_yaml = ("a: '" + "x" * (1024 * 1024 + 10) + "'").encode()
    streamed = http.post("/v1/ossa/manifests", content=_chunked(big_yaml), headers=YAML)
    assert "content-length" not in streamed.request.headers
    assert_openai_error(streamed, 413, "request_too_large")
    assert all_names(http) == before
    # JSON is read whole before any route runs: past the default 8 MiB it stops reading there
    big_json = json.dumps({"model": "math-tutor", "messages": [{"role": "user", "content": "x" * (9 * 1024 * 1024)}]})
    json_type = {"content-type": "application/json"}
    chat = http.post("/v1/chat/completions", content=_chunked(big_json.encode()), headers=json_type)
    assert_openai_error(chat, 413, "request_too_large")
    # the manifests' 1 MiB is theirs alone: a 2 MiB workflow input under /v1/ossa is read (and refused for its name)
    run = http.post("/v1/ossa/workflows/no-such-workflow/runs", json={"input": {"text": "x" * (2 * 1024 * 1024)}})
    assert run.status_code == 404, run.text


def test_conflicts_sizes_media_types_and_unknown_paths(http):
    assert_openai_error(http.post("/v1/ossa/manifests", content=manifest("math-tutor"), headers=YAML), 409, "conflict")
    big = "a: '" + "x" * (1024 * 1024 + 10) + "'"
    assert_openai_error(http.post("/v1/ossa/manifests", content=big, headers=YAML), 413, "request_too_large")
    assert_openai_error(
        http.post("/v1/ossa/manifests", content=b"<xml/>", headers={"content-type": "application/xml"}), 415
    )
    assert_openai_error(http.post("/v1/ossa/manifests", content=b"", headers=YAML), 400, "empty_body")
    assert_openai_error(
        http.put("/v1/ossa/manifests/other", content=manifest("mine"), headers=YAML),
        400,
        "invalid_request",
        "metadata.name",
    )
    assert_openai_error(http.get("/v1/ossa/manifests/math-tutor", params={"version": 0}), 400)
    assert_openai_error(http.get("/v1/ossa/manifests/math-tutor", params={"format": "xml"}), 400, param="format")
    assert_openai_error(http.get("/v1/ossa/manifests", params={"limit": 1000}), 400, param="limit")
    assert_openai_error(http.get("/v1/ossa/manifests", params={"after": "nobody"}), 400, param="after")
    assert_openai_error(http.get("/v1/ossa/manifests/a.b"), 404)
    assert_openai_error(http.get("/v1/no/such/path"), 404, "not_found")
    assert_openai_error(http.patch("/v1/ossa/manifests/math-tutor"), 405)


def test_every_answer_carries_a_request_id_and_echoes_the_callers(http):
    assert http.get("/v1/ossa/manifests", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert http.get("/healthz").headers["x-request-id"].startswith("req_")


def test_the_bus_contract_is_served_as_asyncapi(http):
    document = http.get("/asyncapi").json()
    assert document["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in document["channels"].values()}
    assert {
        "ossa.tasks.>",
        "ossa.ask.*",
        "ossa.workflows.>",
        "ossa.ask.workflow.*",
        "ossa.ext.>",
        "ossa.registry.manifests.get",
        "ossa.events.{thread_id}.{run_id}.{event}",
        "ossa.events.{workflow}.{workflow_run_id}.{event}",
    } <= addresses
    assert http.get("/asyncapi", params={"format": "yaml"}).headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(http.get("/asyncapi.yaml").text) == http.get("/asyncapi.json").json() == document


def test_the_committed_asyncapi_document_is_current():
    """contracts/asyncapi.yaml is what `ossabus contracts asyncapi` prints; regenerate it when this fails."""
    from ossabus.contracts.asyncapi import render

    assert (REPO / "contracts" / "asyncapi.yaml").read_text() == render("yaml")


def test_every_channel_documents_its_payload():
    import json
    import re

    from ossabus.contracts.asyncapi import build

    document = build()
    schemas = document["components"]["schemas"]
    text = json.dumps(document)
    assert {r for r in re.findall(r'"#/components/schemas/([^"]+)"', text)} <= set(schemas)
    for name, message in document["components"]["messages"].items():
        assert "$ref" in message["payload"], name
    task = schemas["TaskMessage"]
    assert task["required"] == ["input"]
