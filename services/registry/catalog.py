"""Validating a batch of manifests together: files, directories, or one request's text.

A batch is judged as a whole for what one document cannot see alone: two files that claim the
same name (neither is taken, because there is no honest way to choose), and Workflow steps that
refer to agents defined elsewhere in the batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ossabus.contracts.agent import AgentDefinition
from ossabus.contracts.diagnostics import Diagnostic, ValidationReport
from ossabus.registry.documents import (
    Document,
    ParseError,
    manifest_files,
    parse_documents,
    read_manifest_file,
)
from ossabus.registry.validation import NameResolver, validate_document


@dataclass
class Entry:
    """One document of the batch, its report and (when valid) its definition."""

    document: Document
    report: ValidationReport
    definition: AgentDefinition | None

    @property
    def valid(self) -> bool:
        return self.definition is not None and self.report.valid


@dataclass
class Batch:
    entries: list[Entry] = field(default_factory=list)
    unreadable: list[Diagnostic] = field(default_factory=list)
    skipped: list[Diagnostic] = field(default_factory=list)  # warnings: documents that are no manifest

    @property
    def valid_entries(self) -> list[Entry]:
        return [e for e in self.entries if e.valid]

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return [*self.unreadable, *self.skipped, *(d for e in self.entries for d in e.report.diagnostics)]

    @property
    def ok(self) -> bool:
        return not self.unreadable and all(e.report.valid for e in self.entries)


def documents_from_paths(paths: Iterable[Path]) -> tuple[list[Document], list[Diagnostic]]:
    docs: list[Document] = []
    problems: list[Diagnostic] = []
    for root in paths:
        if not root.exists():
            problems.append(
                Diagnostic(
                    severity="error",
                    source="ossabus",
                    code="file.missing",
                    message="no such file",
                    file=str(root),
                )
            )
            continue
        for path in manifest_files(root):
            try:
                docs.extend(read_manifest_file(path))
            except ParseError as exc:
                problems.append(exc.diagnostic)
    return docs, problems


def validate_batch(
    docs: list[Document],
    *,
    strict: bool = False,
    resolve: NameResolver | None = None,
    unreadable: list[Diagnostic] | None = None,
) -> Batch:
    names_in_batch = {d.data.get("metadata", {}).get("name") for d in docs if isinstance(d.data, dict)}
    names_in_batch.discard(None)

    def resolve_any(name: str) -> bool:
        return name in names_in_batch or (resolve is not None and resolve(name))

    batch = Batch(unreadable=list(unreadable or []))
    per_source: dict[str | None, int] = defaultdict(int)
    for doc in docs:
        per_source[doc.file] += 1
    for doc in docs:
        if per_source[doc.file] > 1 and not _is_manifest(doc.data):
            batch.skipped.append(_skipped(doc))
            continue
        outcome = validate_document(doc, strict=strict, resolve=resolve_any)
        batch.entries.append(Entry(doc, outcome.report, outcome.definition))
    _reject_duplicate_names(batch)
    return batch


def _is_manifest(data: object) -> bool:
    return isinstance(data, dict) and ("apiVersion" in data or "kind" in data)


def _skipped(doc: Document) -> Diagnostic:
    """A document beside manifests that is none (no apiVersion, no kind): documentation, a shell
    snippet, a config for another tool. The official schema does not judge it; neither do we."""
    return Diagnostic(
        severity="warning",
        source="ossabus",
        code="document.not_a_manifest",
        message="this document has no apiVersion and no kind; skipped",
        file=doc.file,
        line=doc.line_of([]),
        document=doc.index,
    )


def _reject_duplicate_names(batch: Batch) -> None:
    by_name: dict[str, list[Entry]] = defaultdict(list)
    for entry in batch.entries:
        if entry.report.name:
            by_name[entry.report.name].append(entry)
    for name, entries in by_name.items():
        if len(entries) < 2:
            continue
        places = [_place(e) for e in entries]
        for entry in entries:
            others = ", ".join(p for p in places if p != _place(entry))
            entry.report.diagnostics.append(
                Diagnostic(
                    severity="error",
                    source="ossabus",
                    code="manifest.duplicate_name",
                    message=f"name {name!r} is also defined in {others}; rename one (neither is loaded)",
                    path="$.metadata.name",
                    file=entry.document.file,
                    line=entry.document.line_of(["metadata", "name"]),
                    document=entry.document.index,
                )
            )
            entry.definition = None


def _place(entry: Entry) -> str:
    line = entry.document.line_of(["metadata", "name"])
    where = entry.document.file or "<input>"
    if entry.document.index:
        where += f"[doc {entry.document.index}]"
    return f"{where}:{line}" if line else where


def validate_text(
    text: str,
    *,
    fmt: str = "auto",
    strict: bool = False,
    source: str | None = None,
    resolve: NameResolver | None = None,
) -> Batch:
    """Validate manifest text received over the bus or HTTP (one or more documents)."""
    try:
        docs = parse_documents(text, source, fmt)
    except ParseError as exc:
        return Batch(unreadable=[exc.diagnostic])
    return validate_batch(docs, strict=strict, resolve=resolve)
