"""Strict mode agrees with the official JSON Schemas on every official example manifest."""

import json
from functools import cache

import jsonschema
import pytest
import yaml

from ossabus.registry.catalog import validate_batch
from ossabus.registry.documents import ParseError, read_manifest_file
from ossabus.registry.schemas import choose_schema
from ossabus.registry.validation import validate_document

from conftest import REPO, SHARED, shared_path

EXAMPLES = SHARED / "ossa" / "examples"  # v0.2.2 and v0.3.x
EXAMPLES_V04 = SHARED / "ossa" / "examples-v0.4"  # v0.4.x and v0.5
EXAMPLE_FILES = sorted(EXAMPLES.iterdir()) if EXAMPLES.is_dir() else []
EXAMPLE_FILES_V04 = sorted(EXAMPLES_V04.iterdir()) if EXAMPLES_V04.is_dir() else []


@cache
def official(version: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(
        json.loads(shared_path("ossa", "schemas", f"ossa-{version}.schema.json").read_text())
    )


def test_shipped_schemas_are_unmodified_copies_of_the_official_ones():
    for version in ("0.2.2", "0.3.3", "0.3.4", "0.4.6", "0.4.7", "0.5"):
        shipped = REPO / "contracts" / "ossa_schemas" / f"ossa-{version}.schema.json"
        assert shipped.read_bytes() == shared_path("ossa", "schemas", f"ossa-{version}.schema.json").read_bytes()


def test_examples_folder_is_present():
    if not EXAMPLES.is_dir():
        pytest.fail(f"{EXAMPLES} is absent: the conformance cases below did not run")
    assert len(EXAMPLE_FILES) > 50
    assert len(EXAMPLE_FILES_V04) == 132


@pytest.mark.parametrize("path", EXAMPLE_FILES + EXAMPLE_FILES_V04, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_strict_verdict_and_error_paths_match_the_official_schema(path):
    try:
        documents = read_manifest_file(path)
    except ParseError as exc:  # pragma: no cover - every shipped example parses today
        pytest.fail(f"could not read an official example: {exc}")
    skipped = {d.document for d in validate_batch(documents, strict=True).skipped}
    for doc in documents:
        outcome = validate_document(doc, strict=True)
        if len(documents) > 1 and not (isinstance(doc.data, dict) and {"apiVersion", "kind"} & doc.data.keys()):
            # A document beside manifests that is none (a snippet, a note): skipped with a warning.
            assert doc.index in skipped
            continue
        if not isinstance(doc.data, dict):
            # Not a manifest at all (e.g. a shell snippet after `---`): both sides reject it.
            assert not official("0.3.4").is_valid(doc.data)
            assert not outcome.report.valid
            continue
        choice = choose_schema(doc.data.get("apiVersion"))
        assert choice is not None, f"{path.name}: examples use apiVersions ossabus supports"
        official_paths = sorted({e.json_path for e in official(choice.version).iter_errors(doc.data)})
        our_paths = sorted({d.path for d in outcome.report.errors if d.source == "schema"})
        assert our_paths == official_paths
        assert outcome.report.valid == (not official_paths), [d.render() for d in outcome.report.errors]


def test_examples_parse_the_same_as_plain_yaml():
    for path in EXAMPLE_FILES:
        if path.suffix == ".json":
            continue
        ours = [d.data for d in read_manifest_file(path)]
        assert ours == [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def test_every_v0_4_and_v0_5_agent_the_official_schema_accepts_loads_in_lenient_mode():
    loaded, refused = 0, []
    for path in EXAMPLE_FILES_V04:
        for doc in read_manifest_file(path):
            if not isinstance(doc.data, dict) or doc.data.get("kind") != "Agent":
                continue
            choice = choose_schema(doc.data.get("apiVersion"))
            if choice is None or not official(choice.version).is_valid(doc.data):
                continue
            outcome = validate_document(doc, strict=False)
            if outcome.definition is None:
                refused.append((path.name, [d.render() for d in outcome.report.errors]))
            else:
                loaded += 1
    assert refused == []
    assert loaded > 60
