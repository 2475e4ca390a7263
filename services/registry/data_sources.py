"""Retrieval sources a manifest declares: `spec.data_sources` (seed 000's form), `spec.knowledge_sources`
(v0.4) and `extensions.knowledge_sources` (the form of OSSA's RAG example).

A `vector_store` source that names an ossabus vector store (`vector_store_id`, at the top or in its
`config`) is searched by `file_search` in the agent's runs, exactly like an assistant's
`tool_resources.file_search.vector_store_ids`: the store still belongs to its project, so a run of
another project finds nothing in it. A source that points at a vector database of its own (a Qdrant
`collection` at an `endpoint`) is kept, not searched, with a warning: a manifest must not pick the
network it reaches, and ossabus searches only the stores it indexes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ossabus.registry.validation import Findings

STORE_ID = re.compile(r"vs_[A-Za-z0-9_-]{1,64}")


@dataclass
class DataSources:
    declared: list[dict[str, Any]] = field(default_factory=list)  # every source, as written
    vector_store_ids: list[str] = field(default_factory=list)  # the ossabus stores among them
    first_store_path: list[str | int] | None = None


def read_data_sources(spec: dict, ext: dict, f: Findings) -> DataSources:
    found = DataSources()
    places: list[tuple[list[str | int], Any]] = [
        (["spec", "data_sources"], spec.get("data_sources")),
        (["spec", "knowledge_sources"], spec.get("knowledge_sources")),
        (["spec", "knowledgeSources"], spec.get("knowledgeSources")),
        (["extensions", "knowledge_sources"], ext.get("knowledge_sources")),
    ]
    for base, items in places:
        if items is None:
            continue
        if not isinstance(items, list):
            f.warning("data_source.list_expected", "expected a list of sources", base)
            continue
        for i, item in enumerate(items):
            _read_one(item, [*base, i], found, f)
    return found


def _read_one(item: Any, path: list[str | int], found: DataSources, f: Findings) -> None:
    if not isinstance(item, dict):
        f.warning("data_source.not_an_object", "a source is an object with a `type`", path)
        return
    found.declared.append(item)
    if item.get("type") != "vector_store":
        f.warning(
            "data_source.not_searched",
            f"sources of type {item.get('type')!r} are kept, not searched (only vector_store sources are)",
            path,
        )
        return
    config = item.get("config") if isinstance(item.get("config"), dict) else {}
    store_id = item.get("vector_store_id", config.get("vector_store_id"))
    if store_id is None:
        what = item.get("provider") or "external"
        f.warning(
            "data_source.external",
            f"a {what} collection of its own is kept, not searched: ossabus searches the vector stores it "
            "indexes; upload the documents to one and name it with `vector_store_id`",
            path,
        )
        return
    if not isinstance(store_id, str) or not STORE_ID.fullmatch(store_id):
        f.warning(
            "data_source.invalid_store", f"vector_store_id must be an id such as vs_abc123, got {store_id!r}", path
        )
        return
    if store_id not in found.vector_store_ids:
        found.vector_store_ids.append(store_id)
    if found.first_store_path is None:
        found.first_store_path = path
