"""Reading manifest text into documents that remember where each value came from.

PyYAML's composer gives us nodes with line marks; we keep them so every diagnostic can name the
line. The same pass catches what plain `yaml.safe_load` silently accepts: duplicate keys (the last
one wins without a word) and alias bombs (a few KiB that expand to gigabytes when serialised).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ossabus.contracts.diagnostics import Diagnostic
from ossabus.runtime.input_guard import InputRejected, check_json_depth, check_yaml, surrogate_path

MAX_MANIFEST_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 200_000
MANIFEST_SUFFIXES = (".ossa.yaml", ".ossa.yml", ".ossa.json", ".yaml", ".yml", ".json")

try:  # the C loader is ~10x faster and keeps marks too
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


@dataclass
class Document:
    """One parsed manifest document and the means to locate its values in the source."""

    data: Any
    file: str | None
    index: int
    format: str
    text: str
    node: yaml.Node | None = None
    problems: list[Diagnostic] = field(default_factory=list)

    @property
    def raw(self) -> str:
        """This document's own text: the whole file when it holds one document, else its slice."""
        if self.node is None or (self.index == 0 and self.text.count("\n---") == 0):
            return self.text
        return self.text[self.node.start_mark.index : self.node.end_mark.index].strip() + "\n"

    def line_of(self, path: list[str | int]) -> int | None:
        """1-based source line of the value at `path` (its key's line inside a mapping), or of its
        nearest existing ancestor."""
        node = self.node
        if node is None:
            return None
        line = node.start_mark.line
        for step in path:
            found = _child(node, step)
            if found is None:
                break
            mark_node, node = found
            line = mark_node.start_mark.line
        return line + 1


def _child(node: yaml.Node, step: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(node whose line to report, child node) for one path step."""
    if isinstance(node, yaml.MappingNode) and isinstance(step, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == step:
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        return node.value[step], node.value[step]
    return None


class ParseError(ValueError):
    """The text is not a manifest document at all; carries the diagnostic to report."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _error(code: str, message: str, file: str | None, line: int | None = None, doc: int | None = None):
    return ParseError(
        Diagnostic(severity="error", source="ossabus", code=code, message=message, file=file, line=line, document=doc)
    )


def detect_format(text: str, file: str | None, hint: str = "auto") -> str:
    """`json` or `yaml`: the explicit hint, then the file suffix, then the first character."""
    if hint in ("json", "yaml"):
        return hint
    if file and file.endswith(".json"):
        return "json"
    return "json" if text.lstrip().startswith(("{", "[")) and not file else "yaml"


def parse_documents(text: str, file: str | None = None, fmt: str = "auto") -> list[Document]:
    """Parse YAML (possibly multi-document) or JSON text; raise ParseError with a located message."""
    size = len(text.encode("utf-8"))
    if size > MAX_MANIFEST_BYTES:
        raise _error("manifest.too_large", f"manifest is {size} bytes; the limit is {MAX_MANIFEST_BYTES}", file)
    fmt = detect_format(text, file, fmt)
    try:  # before any tree is built: parsers recurse (see runtime/input_guard.py)
        check_json_depth(text) if fmt == "json" else check_yaml(text)
    except InputRejected as rejected:
        raise _error(f"manifest.{rejected.code}", rejected.message, file, rejected.line) from rejected
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _error("parse.json", f"invalid JSON: {exc.msg} (column {exc.colno})", file, exc.lineno) from exc
        documents = [Document(data=data, file=file, index=0, format="json", text=text)]
    else:
        documents = _parse_yaml(text, file)
    for doc in documents:
        path = surrogate_path(doc.data)
        if path is not None:
            where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
            raise _error(
                "manifest.invalid_text",
                f"{where} holds a lone surrogate (an escape such as \\ud800 that is not a character)",
                file,
                doc.line_of(path),
                doc.index,
            )
    return documents


def _parse_yaml(text: str, file: str | None) -> list[Document]:
    docs: list[Document] = []
    loader = _Loader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            problems = _check_node_tree(node, file, index)
            data = loader.construct_document(node)
            if data is not None:
                docs.append(Document(data, file, index, "yaml", text, node, problems))
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        detail = f"{exc.problem or exc.context}"
        raise _error("parse.yaml", f"invalid YAML: {detail}", file, line) from exc
    except yaml.YAMLError as exc:
        raise _error("parse.yaml", f"invalid YAML: {exc}", file) from exc
    finally:
        loader.dispose()
    if not docs:
        raise _error("manifest.empty", "no manifest document found", file)
    return docs


def _check_node_tree(root: yaml.Node, file: str | None, doc: int) -> list[Diagnostic]:
    """Find duplicate mapping keys and refuse trees whose aliases expand past a sane size."""
    problems: list[Diagnostic] = []
    sizes: dict[int, int] = {}

    def expanded_size(node: yaml.Node, depth: int = 0) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if depth > 200:
            raise _error("manifest.too_deep", "manifest nests more than 200 levels", file, None, doc)
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        problems.append(
                            Diagnostic(
                                severity="warning",
                                source="ossabus",
                                code="yaml.duplicate_key",
                                message=f"key {key.value!r} repeats the one on line {seen[key.value]}; "
                                "the last one wins",
                                file=file,
                                line=key.start_mark.line + 1,
                                document=doc,
                            )
                        )
                    seen[key.value] = key.start_mark.line + 1
                total += expanded_size(key, depth + 1) + expanded_size(value, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(expanded_size(item, depth + 1) for item in node.value)
        sizes[id(node)] = total
        if total > MAX_EXPANDED_NODES:
            raise _error(
                "manifest.too_large",
                f"manifest expands to more than {MAX_EXPANDED_NODES} values (YAML aliases?)",
                file,
                node.start_mark.line + 1,
                doc,
            )
        return total

    expanded_size(root)
    return problems


def read_manifest_file(path: Path) -> list[Document]:
    """Read and parse one file; size is checked before the whole file is read into memory."""
    name = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise _error("file.unreadable", f"cannot read file: {exc.strerror}", name) from exc
    if size > MAX_MANIFEST_BYTES:
        raise _error("manifest.too_large", f"file is {size} bytes; the limit is {MAX_MANIFEST_BYTES}", name)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _error("file.encoding", "file is not UTF-8 text", name) from exc
    except OSError as exc:
        raise _error("file.unreadable", f"cannot read file: {exc.strerror}", name) from exc
    return parse_documents(text, name)


def manifest_files(root: Path) -> list[Path]:
    """Manifest files under `root` (or `root` itself), sorted so loading order is stable."""
    if root.is_file():
        return [root]
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.name.endswith(MANIFEST_SUFFIXES) and not _hidden(p, root)
    )


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)
