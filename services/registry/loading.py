"""Loading manifest folders into the registry at start."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from nats.js import JetStreamContext

from ossabus.contracts.diagnostics import Diagnostic
from ossabus.registry.catalog import documents_from_paths, validate_batch
from ossabus.registry.store import ManifestStore
from ossabus.registry.writes import store_entry

log = logging.getLogger(__name__)


@dataclass
class LoadSummary:
    stored: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[Diagnostic] = field(default_factory=list)


def _source(path: str | None, roots: list[Path]) -> str:
    if path is None:
        return "file"
    for root in roots:
        try:
            return f"{root.name}/{Path(path).relative_to(root)}"
        except ValueError:
            continue
    return path


async def load_directories(dirs: list[Path], store: ManifestStore, js: JetStreamContext) -> LoadSummary:
    """Validate every manifest under `dirs` as one batch (lenient) and store the valid ones.

    Invalid files are reported and skipped; they never stop the others from loading.
    """
    summary = LoadSummary()
    docs, unreadable = documents_from_paths(dirs)
    known = set(await store.names())
    batch = validate_batch(docs, strict=False, resolve=known.__contains__, unreadable=unreadable)
    summary.errors.extend(unreadable)
    for entry in batch.entries:
        for diagnostic in entry.report.diagnostics:
            (log.error if diagnostic.severity == "error" else log.debug)("%s", diagnostic.render())
        if not entry.valid:
            summary.rejected += 1
            summary.errors.extend(entry.report.errors)
            continue
        result = await store_entry(store, js, entry, _source(entry.document.file, dirs))
        if result.changed:
            summary.stored += 1
        else:
            summary.unchanged += 1
    for diagnostic in unreadable:
        log.error("%s", diagnostic.render())
    log.info(
        "manifests: %d stored, %d unchanged, %d rejected (from %s)",
        summary.stored,
        summary.unchanged,
        summary.rejected + len(unreadable),
        ", ".join(map(str, dirs)),
    )
    return summary
