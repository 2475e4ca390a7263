"""Validation: the envelope, the official schemas, semantic checks, and both modes."""

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest

from ossabus.registry.catalog import documents_from_paths, validate_batch, validate_text

from conftest import REPO, shared_path

MANIFESTS = REPO / "manifests"
SEED_FILES = sorted(p for p in MANIFESTS.glob("*.yaml"))
BREAK_OFFICIAL = {
    "code-review-assistant.ossa.yaml",
    "customer-support-agent.ossa.yaml",
    "data-dashboard-agent.ossa.yaml",
    "research-assistant-v0.3.4.ossa.yaml",
}


def agent(body: str, name: str = "demo", api: str = "ossa/v0.3.4") -> str:
    return f"apiVersion: {api}\nkind: Agent\nmetadata:\n  name: {name}\n" + textwrap.dedent(body)


def errors_of(text: str, strict: bool = False):
    batch = validate_text(text, strict=strict, source="m.yaml")
    return [d for d in batch.diagnostics if d.severity == "error"]


def test_fifteen_seed_manifests_ship_and_all_load_leniently():
    assert len(SEED_FILES) == 15
    docs, unreadable = documents_from_paths([MANIFESTS])
    batch = validate_batch(docs, unreadable=unreadable)
    assert not unreadable
    assert [e.document.file for e in batch.entries if not e.valid] == []
    assert len({e.definition.name for e in batch.entries}) == 15 + 4  # and manifests/v0.5


def test_the_bundled_v0_5_agents_validate_strictly_and_show_the_current_shape():
    docs, unreadable = documents_from_paths([MANIFESTS / "v0.5"])
    batch = validate_batch(docs, strict=True, unreadable=unreadable)
    assert batch.ok, [d.render() for d in batch.diagnostics]
    by_name = {e.definition.name: e.definition for e in batch.entries}
    assert {d.api_version for d in by_name.values()} == {"ossa/v0.5"}
    assert [t.name for t in by_name["trip-planner"].tools] == ["get_weather"]
    assert by_name["trip-planner"].llm.max_tokens == 800
    assert by_name["docs-assistant"].tools[0].kind == "mcp"
    assert [s["name"] for s in by_name["travel-desk"].subagents] == ["trip-planner"]


def official_errors(path: Path) -> set[tuple[str, str]]:
    """The official schema's verdict, computed without ossabus, from the vendored schemas (tests/data/shared)."""
    import yaml

    data = yaml.safe_load(path.read_text())
    version = data["apiVersion"].removeprefix("ossa/v")
    schema = json.loads(shared_path("ossa", "schemas", f"ossa-{version}.schema.json").read_text())
    return {(e.json_path, e.message) for e in jsonschema.Draft7Validator(schema).iter_errors(data)}


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.name)
def test_strict_mode_reports_exactly_the_official_schema_errors(path):
    docs, _ = documents_from_paths([path])
    batch = validate_batch(docs, strict=True)
    ours = {(d.path, d.message.split(" (closest match")[0]) for d in batch.diagnostics if d.severity == "error"}
    assert ours == official_errors(path)
    assert (path.name in BREAK_OFFICIAL) == bool(ours)
    assert all(d.source == "schema" for d in batch.diagnostics if d.severity == "error")


def test_lenient_mode_turns_official_schema_errors_into_warnings_with_lines():
    docs, _ = documents_from_paths([MANIFESTS / "customer-support-agent.ossa.yaml"])
    report = validate_batch(docs).entries[0].report
    assert report.valid
    warning = next(d for d in report.warnings if d.path == "$.spec.tools[0]")
    assert warning.source == "schema"
    assert warning.line == 22
    assert warning.file.endswith("customer-support-agent.ossa.yaml")


@pytest.mark.parametrize(
    ("text", "code", "path"),
    [
        ("kind: Agent\nmetadata: {name: a}\nspec: {}\n", "manifest.api_version_missing", "$.apiVersion"),
        (
            "apiVersion: ossa/v9.9.9\nkind: Agent\nmetadata: {name: a}\nspec: {}\n",
            "manifest.api_version_unsupported",
            "$.apiVersion",
        ),
        (
            "apiVersion: ossa/v0.3.4\nkind: Robot\nmetadata: {name: a}\nspec: {}\n",
            "manifest.kind_unsupported",
            "$.kind",
        ),
        ("apiVersion: ossa/v0.2.2\nkind: Task\nmetadata: {name: a}\nspec: {}\n", "manifest.kind_unsupported", "$.kind"),
        ("apiVersion: ossa/v0.3.4\nkind: Agent\nmetadata: {}\nspec: {}\n", "manifest.name_missing", "$.metadata.name"),
        ("apiVersion: ossa/v0.3.4\nkind: Agent\nspec: {}\n", "manifest.metadata_missing", "$.metadata"),
        (
            "apiVersion: ossa/v0.3.4\nkind: Agent\nmetadata: {name: My_Agent}\nspec: {}\n",
            "manifest.name_invalid",
            "$.metadata.name",
        ),
        (
            "apiVersion: ossa/v0.3.4\nkind: Agent\nmetadata: {name: " + "a" * 64 + "}\nspec: {}\n",
            "manifest.name_invalid",
            "$.metadata.name",
        ),
        (
            'apiVersion: ossa/v0.3.4\nkind: Agent\nmetadata: {name: "agent\\n"}\nspec: {}\n',
            "manifest.name_invalid",
            "$.metadata.name",
        ),
        ("- just\n- a list\n", "manifest.not_a_mapping", "$"),
    ],
)
def test_envelope_errors_are_errors_in_both_modes(text, code, path):
    for strict in (False, True):
        found = [(d.code, d.path) for d in errors_of(text, strict)]
        assert (code, path) in found


def test_an_invalid_json_schema_inside_a_capability_is_an_error_with_its_location():
    text = agent("""\
        spec:
          role: You help.
          capabilities:
            - name: lookup
              input_schema:
                type: object
                properties:
                  id: {type: strng}
        """)
    errors = errors_of(text)
    assert [(d.code, d.path, d.line) for d in errors] == [
        ("tool.invalid_schema", "$.spec.capabilities[0].input_schema", 9)
    ]
    assert "strng" in errors[0].message


def test_duplicate_tool_names_in_one_list_are_an_error():
    text = agent("""\
        spec:
          tools:
            - {type: function, name: lookup}
            - {type: function, name: lookup}
        """)
    assert [d.code for d in errors_of(text)] == ["tool.duplicate_name"]


def test_tools_whose_function_names_collide_are_an_error():
    text = agent("""\
        spec:
          tools:
            - {type: function, name: a.b}
            - {type: function, name: a_b}
        """)
    assert [d.code for d in errors_of(text)] == ["tool.name_collision"]


def test_unknown_provider_is_an_error_and_a_missing_model_a_warning():
    assert [d.code for d in errors_of(agent("spec:\n  llm: {provider: acme, model: m1}\n"))] == ["llm.provider_unknown"]
    batch = validate_text(agent("spec:\n  role: hi there\n"), source="m.yaml")
    assert batch.ok
    assert [d.code for d in batch.diagnostics] == ["llm.model_missing"]


def test_secret_references_in_credential_fields_must_name_a_variable():
    text = agent(
        "spec:\n  llm: {provider: openai, model: gpt-4o}\n"
        "  tools:\n    - {type: http, name: h, endpoint: 'http://x', auth: {type: bearer, credentials: '${}'}}\n"
    )
    assert [d.code for d in errors_of(text)] == ["env.invalid_reference"]
    ok = validate_text(
        agent(
            "spec:\n  llm: {provider: openai, model: gpt-4o, api_key_env: X, base_url: '${}'}\n"
            "  tools:\n    - {type: http, name: h, endpoint: '${API_URL:-http://x}/y',\n"
            "       auth: {type: bearer, credentials: '${TOKEN}'}}\n"
        )
    )
    assert ok.ok  # `${...}` outside credential fields is text, not a reference
    assert ok.entries[0].definition.env_refs == ["X", "TOKEN"]
    assert ok.entries[0].definition.llm.base_url == "${}"
    codes = [d.code for d in ok.diagnostics]
    assert codes.count("secret.not_allowed") == 2  # neither X nor TOKEN is allowed by this process


def test_workflow_dependencies_must_be_steps_and_refs_may_be_registered_later():
    text = textwrap.dedent("""\
        apiVersion: ossa/v0.3.3
        kind: Workflow
        metadata: {name: flow}
        spec:
          steps:
            - {id: one, agent_ref: writer}
            - {id: two, task_ref: publisher, depends_on: [three]}
        """)
    batch = validate_text(text, source="w.yaml")
    codes = {(d.severity, d.code) for d in batch.diagnostics}
    assert ("error", "workflow.unknown_dependency") in codes
    assert ("warning", "workflow.unknown_ref") in codes
    resolved = validate_text(text.replace("[three]", "[one]"), resolve={"writer", "publisher"}.__contains__)
    assert resolved.ok
    assert not [d for d in resolved.diagnostics if d.code == "workflow.unknown_ref"]


def test_duplicate_names_across_files_reject_every_copy(tmp_path):
    (tmp_path / "a.yaml").write_text(agent("spec: {role: one two}\n", name="twin"))
    (tmp_path / "b.yaml").write_text(agent("spec: {role: three four}\n", name="twin"))
    docs, _ = documents_from_paths([tmp_path])
    batch = validate_batch(docs)
    assert not batch.ok
    assert [e.valid for e in batch.entries] == [False, False]
    messages = [d.message for d in batch.diagnostics if d.code == "manifest.duplicate_name"]
    assert "b.yaml" in messages[0]
    assert "a.yaml" in messages[1]


def test_newer_0_3_patch_versions_are_checked_against_the_newest_schema_with_a_warning():
    batch = validate_text(agent("spec: {role: hi there}\n", api="ossa/v0.3.5"))
    assert batch.ok
    assert batch.entries[0].report.schema_version == "0.3.4"
    assert "manifest.api_version_newer" in [d.code for d in batch.diagnostics]


def test_prerelease_tags_are_accepted():
    batch = validate_text(agent("spec: {role: hi there}\n", api="ossa/v0.3.4-alpha.1"))
    assert batch.ok, batch.diagnostics


WORKFLOW = """\
apiVersion: ossa/v0.5
kind: Workflow
metadata: {name: review-flow}
spec:
  steps:
    - id: fetch
      kind: Agent
      ref: echo-agent
      input: {mr: "${input.mr_iid}", token: "${secrets.GITLAB_TOKEN}"}
    - id: review
      kind: Agent
      ref: echo-agent
      input: {diff: "${{ steps.fetch.output.diff }}", other: "${STEP_REF}"}
"""


def test_ossa_expressions_are_not_environment_variables():
    batch = validate_text(WORKFLOW, strict=True, source="w.yaml", resolve=lambda name: True)
    assert batch.ok, [d.render() for d in batch.diagnostics]
    assert "env.invalid_reference" not in [d.code for d in batch.diagnostics]


def test_a_step_reference_that_does_not_exist_is_an_error_and_an_unknown_root_a_warning():
    broken = WORKFLOW.replace("steps.fetch.output", "steps.fecth.output").replace("${input.mr_iid}", "${inptu.mr}")
    batch = validate_text(broken, strict=True, source="w.yaml", resolve=lambda name: True)
    errors = [d for d in batch.diagnostics if d.severity == "error"]
    assert [(d.code, d.path) for d in errors] == [("expression.unknown_step", "$.spec.steps[1].input.diff")]
    assert "'fecth'" in errors[0].message
    assert "expression.unknown_root" in [d.code for d in batch.diagnostics if d.severity == "warning"]


def test_an_http_tool_without_an_endpoint_is_a_warning_on_that_tool():
    text = agent(
        "spec:\n  role: You call things.\n  llm: {provider: openai, model: gpt-4o}\n"
        "  tools:\n    - {type: http, name: nowhere}\n    - {type: function, name: here}\n",
        api="ossa/v0.4.7",
    )
    batch = validate_text(text, strict=True, source="m.yaml")
    assert batch.ok
    assert [t.name for t in batch.entries[0].definition.tools] == ["here"]
    assert "tool.http_endpoint_missing" in [d.code for d in batch.diagnostics if d.severity == "warning"]


def test_a_document_that_is_no_manifest_beside_manifests_is_skipped_with_a_warning():
    text = agent("spec: {role: You help people.}\n") + "---\n# notes for humans\nowner: team-a\n---\n- a list\n"
    batch = validate_text(text, strict=True, source="m.yaml")
    assert batch.ok
    assert [e.report.name for e in batch.entries] == ["demo"]
    assert [(d.code, d.document) for d in batch.skipped] == [
        ("document.not_a_manifest", 1),
        ("document.not_a_manifest", 2),
    ]


@pytest.mark.parametrize(
    ("api", "schema"),
    [
        ("ossa/v0.4", "0.4.7"),
        ("ossa/v0.4.1", "0.4.6"),
        ("ossa/v0.4.6", "0.4.6"),
        ("ossa/v0.4.7", "0.4.7"),
        ("ossa/v0.4.9", "0.4.7"),
        ("ossa/v0.5", "0.5"),
        ("ossa/v0.5.2-rc.1", "0.5"),
    ],
)
def test_v0_4_and_v0_5_api_versions_use_their_official_schema(api, schema):
    batch = validate_text(agent("spec: {instructions: You help.}\n", api=api), strict=True)
    assert batch.ok, [d.render() for d in batch.diagnostics]
    assert batch.entries[0].report.schema_version == schema
    assert batch.entries[0].definition.system_prompt == "You help."


def test_a_flow_is_validated_as_a_flow():
    text = "apiVersion: ossa/v0.5\nkind: Flow\nmetadata: {name: events-flow}\nspec: {}\n"
    batch = validate_text(text, strict=True)
    assert batch.ok
    assert batch.entries[0].definition.kind == "Flow"
