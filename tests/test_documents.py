import pytest

from ossabus.registry.documents import MAX_MANIFEST_BYTES, ParseError, parse_documents


def test_yaml_syntax_error_names_the_line():
    with pytest.raises(ParseError) as info:
        parse_documents("apiVersion: ossa/v0.3.4\nkind: Agent\nmetadata: {name: [x\n", "a.yaml")
    diagnostic = info.value.diagnostic
    assert diagnostic.code == "parse.yaml"
    assert diagnostic.file == "a.yaml"
    assert diagnostic.line == 4


def test_json_syntax_error_names_the_line():
    with pytest.raises(ParseError) as info:
        parse_documents('{\n  "a": 1,\n  "b": \n}', "a.json")
    assert info.value.diagnostic.code == "parse.json"
    assert info.value.diagnostic.line == 4


def test_values_are_located_by_path():
    doc = parse_documents("a: 1\nspec:\n  tools:\n    - name: x\n    - name: y\n", "f.yaml")[0]
    assert doc.line_of(["spec", "tools", 1, "name"]) == 5
    assert doc.line_of(["spec", "missing", 3]) == 2  # nearest existing ancestor


def test_multi_document_files_give_each_document_its_own_text():
    docs = parse_documents("a: 1\n---\nb: 2\n---\nc: 3\n", "m.yaml")
    assert [d.data for d in docs] == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert docs[1].raw.strip() == "b: 2"
    assert [d.index for d in docs] == [0, 1, 2]


def test_duplicate_keys_are_reported_not_silently_dropped():
    doc = parse_documents("a: 1\nb: 2\na: 3\n", "d.yaml")[0]
    assert doc.data["a"] == 3
    assert [(p.code, p.line) for p in doc.problems] == [("yaml.duplicate_key", 3)]


def test_alias_bombs_are_refused():
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        levels.append(f"{cur}: &{cur} [{', '.join('*' + prev for _ in range(10))}]")
    with pytest.raises(ParseError) as info:
        parse_documents("\n".join(levels) + "\n", "bomb.yaml")
    assert info.value.diagnostic.code == "manifest.too_large"


def test_texts_over_one_mebibyte_are_refused_before_parsing():
    with pytest.raises(ParseError) as info:
        parse_documents("a: " + "x" * MAX_MANIFEST_BYTES, "big.yaml")
    assert info.value.diagnostic.code == "manifest.too_large"


def test_empty_text_is_not_a_manifest():
    with pytest.raises(ParseError) as info:
        parse_documents("# only a comment\n", "empty.yaml")
    assert info.value.diagnostic.code == "manifest.empty"
