"""The `ossabus` command-line tools, run as a user runs them."""

import json
import subprocess
import textwrap

import jsonschema
import pytest
import yaml

from conftest import REPO, ossabus_command
from openapi_check import openapi_errors

MANIFESTS = REPO / "manifests"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(ossabus_command(*args), capture_output=True, text=True, input=stdin, timeout=60, check=False)


def test_validate_lenient_accepts_all_bundled_manifests():
    result = run("validate", str(MANIFESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    # the 15 seed manifests, and the 3 v0.5 agents and the workflow in manifests/v0.5
    assert "19 manifest(s) checked (lenient): 19 valid, 0 invalid; 0 error(s)" in result.stdout


def test_validate_strict_reports_the_four_that_break_the_official_schema():
    result = run("validate", "--strict", "--json", str(MANIFESTS))
    assert result.returncode == 1
    out = json.loads(result.stdout)
    invalid = sorted(m["file"].rsplit("/", 1)[1] for m in out["manifests"] if not m["valid"])
    assert invalid == [
        "code-review-assistant.ossa.yaml",
        "customer-support-agent.ossa.yaml",
        "data-dashboard-agent.ossa.yaml",
        "research-assistant-v0.3.4.ossa.yaml",
    ]
    errors = [d for m in out["manifests"] for d in m["diagnostics"] if d["severity"] == "error"]
    assert len(errors) == 7
    assert {d["source"] for d in errors} == {"schema"}


def test_validate_names_file_line_and_path(tmp_path):
    bad = tmp_path / "bad.ossa.yaml"
    bad.write_text(
        textwrap.dedent("""\
        apiVersion: ossa/v0.3.4
        kind: Agent
        metadata:
          name: bad
        spec:
          tools:
            - type: function
              name: t
              parameters: {type: objekt}
        """)
    )
    result = run("validate", str(bad))
    assert result.returncode == 1
    assert f"{bad}:9: error: $.spec.tools[0].parameters:" in result.stdout
    assert "[tool.invalid_schema]" in result.stdout


def test_validate_unreadable_and_missing_paths(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    result = run("validate", str(broken), str(tmp_path / "absent.yaml"))
    assert result.returncode == 1
    assert f"{broken}:2: error" in result.stdout
    assert "absent.yaml: error: $: no such file [file.missing]" in result.stdout


def test_convert_to_an_openai_assistant():
    result = run("convert", str(MANIFESTS / "booking-agent.ossa.yaml"), "--to", "openai-assistant")
    assert result.returncode == 0, result.stderr
    assistant = json.loads(result.stdout)
    assert assistant["object"] == "assistant"
    assert [t["function"]["name"] for t in assistant["tools"]] == ["search_flights", "book_flight"]
    assert openapi_errors(assistant, "AssistantObject") == []


def test_convert_to_vercel_ai_settings():
    result = run("convert", str(MANIFESTS / "customer-support-agent.ossa.yaml"), "--to", "vercel-ai")
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings["extension"]["provider"]["name"] == "anthropic"


def test_import_assistant_and_convert_back(tmp_path):
    assistant = {
        "id": "asst_abc123",
        "object": "assistant",
        "created_at": 1,
        "name": "Math Tutor",
        "description": None,
        "model": "gpt-4-turbo",
        "instructions": "Guide students step by step.",
        "tools": [],
        "metadata": {"owner": "edu"},
    }
    source = tmp_path / "assistant.json"
    source.write_text(json.dumps(assistant))
    out = tmp_path / "math.ossa.yaml"
    assert run("import-assistant", str(source), "-o", str(out)).returncode == 0
    manifest = yaml.safe_load(out.read_text())
    assert manifest["metadata"]["name"] == "math-tutor"
    assert manifest["apiVersion"] == "ossa/v0.5"  # the current OSSA, unless --api-version says otherwise
    assert manifest["spec"]["instructions"] == "Guide students step by step."
    assert run("validate", "--strict", str(out)).returncode == 0
    back = json.loads(run("convert", str(out), "--to", "openai-assistant").stdout)
    assert (back["id"], back["name"], back["metadata"]) == ("asst_abc123", "Math Tutor", {"owner": "edu"})
    via_convert = run("convert", str(source), "--to", "ossa")
    assert yaml.safe_load(via_convert.stdout) == manifest


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a JSON file"),
        ('{"apiVersion": "ossa/v0.3.4"}', "not an OpenAI Assistant object"),
        ('{"id": 5, "model": "gpt-4o"}', "not a valid Assistant object"),
    ],
)
def test_import_assistant_rejects_bad_input_with_a_message(tmp_path, content, message):
    source = tmp_path / "a.json"
    source.write_text(content)
    result = run("import-assistant", str(source))
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_contracts_export_writes_valid_json_schemas(tmp_path):
    result = run("contracts", "export", str(tmp_path))
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["subjects"]["TASKS_ALL"] == "ossa.tasks.>"
    for name, entry in index["models"].items():
        schema = json.loads((tmp_path / entry["file"]).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["title"] == name
    task_schema = json.loads((tmp_path / "TaskMessage.schema.json").read_text())
    jsonschema.validate({"input": "hello", "thread_id": "thread_1", "metadata": {"k": "v"}}, task_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"thread_id": "thread_1"}, task_schema)


def test_run_without_a_reachable_bus_says_so_in_one_line():
    from conftest import free_port, process_env

    done = subprocess.run(
        ossabus_command("run", "homework-check", "--input", '{"problems": ["2x = 8"]}'),
        capture_output=True,
        text=True,
        timeout=60,
        env=process_env({"NATS_URL": f"nats://127.0.0.1:{free_port()}"}),  # nothing listens there
    )
    assert done.returncode == 1
    assert "cannot reach NATS" in done.stderr
    assert "Traceback" not in done.stderr
