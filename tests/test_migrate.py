"""Upgrading old manifests to v0.5: every seed manifest and every official v0.2/v0.3 agent example
becomes a manifest that validates strictly and means the same to the executor."""

import json
import subprocess
import sys

import pytest
import yaml

from ossabus.registry.catalog import validate_batch
from ossabus.registry.convert_openai import from_assistant, to_assistant
from ossabus.registry.documents import parse_documents, read_manifest_file
from ossabus.registry.migrate import migrate
from ossabus.registry.validation import validate_document

from conftest import REPO, SHARED

SEEDS = sorted((REPO / "manifests").glob("*.ossa.yaml"))
V03_AGENTS = [
    path
    for path in sorted((SHARED / "ossa" / "examples").iterdir())
    if any(isinstance(d.data, dict) and d.data.get("kind") == "Agent" for d in read_manifest_file(path))
]


def what_runs(definition) -> dict:
    """What the executor reads from a definition."""
    llm = definition.llm
    return {
        "system_prompt": definition.system_prompt,
        "llm": (llm.litellm_model, llm.temperature, llm.top_p, llm.max_tokens, llm.base_url, llm.api_key_env, llm.stop),
        "tools": [(t.name, t.kind, json.dumps(t.parameters, sort_keys=True)) for t in definition.tools],
        "limits": definition.limits.model_dump(),
    }


def upgraded(path, target="ossa/v0.5"):
    agents = [d for d in read_manifest_file(path) if isinstance(d.data, dict) and d.data.get("kind") == "Agent"]
    manifests = agents or [d for d in read_manifest_file(path) if isinstance(d.data, dict)]
    doc = manifests[0]
    before = validate_document(doc, strict=False)
    assert before.definition is not None
    migration = migrate(doc.data, before.definition, target)
    text = yaml.safe_dump(migration.manifest, sort_keys=False)
    (after,) = validate_batch(parse_documents(text, f"{path.name} (upgraded)", "yaml"), strict=True).entries
    return before.definition, after, migration


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
def test_every_seed_manifest_upgrades_to_a_strictly_valid_v0_5_manifest_that_runs_the_same(path):
    before, after, migration = upgraded(path)
    assert after.report.valid, [d.render() for d in after.report.errors]
    assert after.definition.api_version == "ossa/v0.5"
    assert what_runs(after.definition) == what_runs(before)
    assert "llm" not in migration.manifest["spec"]
    assert migration.changes[0].endswith("-> ossa/v0.5")


@pytest.mark.parametrize("path", V03_AGENTS, ids=lambda p: p.name)
def test_official_v0_2_and_v0_3_agents_upgrade_to_v0_5_and_v0_4_the_same_way(path):
    before, after, _ = upgraded(path)
    assert after.definition is not None, [d.render() for d in after.report.errors]
    assert what_runs(after.definition) == what_runs(before)
    _, on_v04, _ = upgraded(path, "ossa/v0.4")
    assert what_runs(on_v04.definition) == what_runs(before)


def test_upgrading_twice_changes_nothing_more():
    _, once, _ = upgraded(REPO / "manifests" / "booking-agent.ossa.yaml")
    again = migrate(once.document.data, once.definition, "ossa/v0.5")
    assert again.manifest == once.document.data
    assert again.changes == ["apiVersion ossa/v0.5 -> ossa/v0.5"]


def test_a_v0_5_agent_survives_the_openai_assistant_round_trip():
    _, v05, _ = upgraded(REPO / "manifests" / "booking-agent.ossa.yaml")
    assistant = to_assistant(v05.definition, created_at=1).model_dump(mode="json")
    back = from_assistant(assistant)
    (entry,) = validate_batch(parse_documents(yaml.safe_dump(back), "back.yaml", "yaml")).entries
    assert entry.definition.system_prompt == v05.definition.system_prompt
    assert [t.name for t in entry.definition.tools] == [t.name for t in v05.definition.tools]
    assert entry.definition.llm.litellm_model == v05.definition.llm.litellm_model


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ossabus.cli", *args], capture_output=True, text=True, timeout=60)


def test_the_cli_upgrades_and_says_what_it_changed(tmp_path):
    done = run_cli(
        "convert", str(REPO / "manifests" / "math-tutor.ossa.yaml"), "--to", "ossa", "--api-version", "ossa/v0.5"
    )
    assert done.returncode == 0, done.stderr
    manifest = yaml.safe_load(done.stdout)
    assert manifest["apiVersion"] == "ossa/v0.5"
    assert manifest["spec"]["model"]["parameters"]["maxTokens"] == 2048
    assert "changed: spec.llm -> spec.model" in done.stderr
    out = tmp_path / "m.yaml"
    out.write_text(done.stdout)
    assert run_cli("validate", "--strict", str(out)).returncode == 0


def test_import_assistant_writes_v0_5_by_default_and_older_on_request(tmp_path):
    source = REPO / "contracts" / "examples" / "openai-assistant.json"
    current = yaml.safe_load(run_cli("import-assistant", str(source)).stdout)
    assert current["apiVersion"] == "ossa/v0.5"
    assert current["spec"]["instructions"].startswith("You write concise release notes")
    assert current["spec"]["model"]["parameters"]["temperature"] == 0.3
    older = yaml.safe_load(run_cli("import-assistant", str(source), "--api-version", "ossa/v0.3.4").stdout)
    assert older["apiVersion"] == "ossa/v0.3.4"
    assert older["spec"]["prompts"]["system"].startswith("You write concise release notes")
