"""Validating and storing one manifest, the same way for the bus, HTTP and start-up loading."""

from __future__ import annotations

import asyncio
import logging

from nats.js import JetStreamContext

from ossabus.contracts import subjects
from ossabus.contracts.bus import BusError, ManifestChanged, ManifestRecord, PutManifestResult
from ossabus.contracts.diagnostics import Diagnostic
from ossabus.contracts.ids import new_id
from ossabus.registry.catalog import Entry, validate_text
from ossabus.registry.documents import MAX_MANIFEST_BYTES
from ossabus.registry.store import ManifestStore
from ossabus.runtime.bus import BusFailure

log = logging.getLogger(__name__)


def invalid(diagnostics: list[Diagnostic]) -> BusFailure:
    """A 400 whose message is the first error, with every finding attached."""
    errors = [d for d in diagnostics if d.severity == "error"]
    first = errors[0] if errors else diagnostics[0]
    message = f"invalid manifest: {first.path}: {first.message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return BusFailure(BusError(code="invalid_manifest", message=message, param=first.path, diagnostics=diagnostics))


def single_valid_entry(text: str, *, fmt: str, strict: bool, source: str, known: set[str]) -> Entry:
    """Parse and validate text that must hold exactly one valid manifest; raise a typed 4xx otherwise."""
    size = len(text.encode("utf-8"))
    if size > MAX_MANIFEST_BYTES:
        raise BusFailure.of("too_large", f"manifest is {size} bytes; the limit is {MAX_MANIFEST_BYTES} bytes")
    batch = validate_text(text, fmt=fmt, strict=strict, source=None, resolve=known.__contains__)
    if batch.unreadable:
        raise invalid(batch.unreadable)
    if len(batch.entries) != 1:
        raise BusFailure.of(
            "invalid_request",
            f"send one manifest per request; this text holds {len(batch.entries)} documents",
        )
    entry = batch.entries[0]
    if not entry.valid:
        raise invalid(entry.report.diagnostics)
    return entry


def record_for(entry: Entry, source: str, version: int, created_at: int, now: int) -> ManifestRecord:
    assert entry.definition is not None
    d = entry.definition
    return ManifestRecord(
        name=d.name,
        kind=d.kind,
        api_version=d.api_version,
        version=version,
        metadata_version=d.version,
        description=d.description,
        source=source,
        created_at=created_at,
        updated_at=now,
        format=entry.document.format,  # type: ignore[arg-type]
        raw=entry.document.raw,
        manifest=entry.document.data,
        definition=d,
        warnings=entry.report.warnings,
    )


async def store_entry(
    store: ManifestStore, js: JetStreamContext, entry: Entry, source: str, *, create_only: bool = False
) -> PutManifestResult:
    import time

    assert entry.definition is not None
    now = int(time.time())
    record, created, changed = await store.put(
        lambda version, created_at: record_for(entry, source, version, created_at, now),
        entry.definition.name,
        create_only=create_only,
    )
    if changed:
        await publish_change(
            js, ManifestChanged(name=record.name, action="put", version=record.version, kind=record.kind)
        )
    return PutManifestResult(record=record, created=created, changed=changed)


CHANGE_ATTEMPTS = 5


async def publish_change(js: JetStreamContext, event: ManifestChanged) -> None:
    """Announce a write, trying again on a failed acknowledgement (the message id lets JetStream drop
    a copy that did land). The write already happened, so a lost announcement is logged, not raised;
    caches also notice the registry's revision moving (`runtime.registry_revision`)."""
    msg_id = new_id("change")  # one per announcement: it dedupes only its own retries
    delay = 0.1
    for attempt in range(1, CHANGE_ATTEMPTS + 1):
        try:
            await js.publish(
                subjects.registry_changed(event.name),
                event.model_dump_json().encode(),
                timeout=5,
                headers={"Nats-Msg-Id": msg_id},
            )
            return
        except Exception as exc:
            if attempt == CHANGE_ATTEMPTS:
                log.warning(
                    "could not publish the change event for %s after %d attempts (%s); caches notice the "
                    "registry's revision within seconds instead",
                    event.name,
                    attempt,
                    type(exc).__name__,
                )
                return
            await asyncio.sleep(delay)
            delay *= 3
