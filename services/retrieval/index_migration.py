"""Indexes written by the client's local mode (`<data>/qdrant`, ossabus before Qdrant Edge became the
embedded engine) are carried into Edge once, at start, so an upgrade loses no indexed file: every
point with its dense vector and payload, under the same id (its term vector is made again from its
text: the terms are named differently now). The old folder is then renamed, not deleted,
so an operator can still go back."""

from __future__ import annotations

import logging
from pathlib import Path

from ossabus.retrieval.index import DENSE, term_counts
from ossabus.retrieval.index_edge import EdgeIndex

log = logging.getLogger(__name__)
LEGACY_FOLDER = "qdrant"
MIGRATED_FOLDER = "qdrant.migrated-to-edge"
PAGE = 256


async def carry_local_mode_into(edge: EdgeIndex, data_dir: Path) -> int:
    """Copies what the legacy folder holds; returns the number of points carried."""
    legacy = data_dir / LEGACY_FOLDER
    if not (legacy / "collection").is_dir():
        return 0
    from qdrant_client import AsyncQdrantClient  # seconds to import: only when there is something to carry

    client = AsyncQdrantClient(path=str(legacy))
    carried = 0
    try:
        for collection in (await client.get_collections()).collections:
            offset = None
            while True:
                points, offset = await client.scroll(
                    collection.name, limit=PAGE, offset=offset, with_vectors=True, with_payload=True
                )
                batch = []
                for point in points:
                    vectors = point.vector if isinstance(point.vector, dict) else {}
                    dense, text = vectors.get(DENSE), (point.payload or {}).get("text")
                    if dense is not None and isinstance(text, str):  # term vectors are made anew: their ids changed
                        batch.append((str(point.id), dense, term_counts(text), point.payload))
                if batch:
                    await edge.put_points(collection.name, batch)
                    carried += len(batch)
                if offset is None:
                    break
    finally:
        await client.close()
    legacy.rename(data_dir / MIGRATED_FOLDER)
    log.info("carried %d indexed chunks from %s into the embedded engine (Qdrant Edge)", carried, legacy)
    return carried
