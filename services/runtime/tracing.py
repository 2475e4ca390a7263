"""OpenTelemetry for one ossabus process: providers, exporters, and trace context on NATS messages.

Tracing is on when somewhere to send spans is configured: OTLP (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, the SDK's standard variables; `OSSABUS_OTLP_ENDPOINT` as
ossabus's own spelling) or a file of JSON lines (`OSSABUS_TRACES_FILE`, one span per line: for
debugging and for the tests). Otherwise the API's no-op tracer is used and a span costs next to
nothing. Sampling follows the SDK's `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.

Messages that FastStream publishes carry W3C trace context through its telemetry middleware; the
places that publish with nats-py directly (the work queue, chat requests, tool workers) inject it
with `headers_with_context`, and whoever consumes them continues the trace with `context_from`.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult

from ossabus import __version__

TRACER_NAME = "ossabus"
CONTENT_ENV = "OSSABUS_TRACE_CONTENT"  # "true": prompts and answers on spans (off: they may be personal data)
_lock = threading.Lock()


class JsonLinesExporter(SpanExporter):
    """Appends each span as one JSON line (the SDK's own JSON form of a span)."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: list[ReadableSpan]) -> SpanExportResult:
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing held open."""


def otlp_endpoint() -> str | None:
    return (
        os.environ.get("OSSABUS_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


@functools.cache
def configure() -> bool:
    """Set this process's tracer provider once; True when spans go somewhere."""
    if os.environ.get("OSSABUS_TRACING", "").lower() in ("off", "false", "0"):
        return False
    path, endpoint = os.environ.get("OSSABUS_TRACES_FILE"), otlp_endpoint()
    if not path and not endpoint:
        return False
    name = os.environ.get("OTEL_SERVICE_NAME", "ossabus")
    resource = Resource.create({"service.name": name, "service.version": __version__})
    provider = TracerProvider(resource=resource)
    if path:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        traces_url = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url)))
    with _lock:
        trace.set_tracer_provider(provider)
    return True


def enabled() -> bool:
    return configure()


def tracer() -> trace.Tracer:
    configure()
    return trace.get_tracer(TRACER_NAME, __version__)


def capture_content() -> bool:
    return os.environ.get(CONTENT_ENV, "").lower() in ("1", "true", "yes")


def headers_with_context(headers: dict[str, str] | None = None) -> dict[str, str] | None:
    """`headers` plus `traceparent` (and `tracestate`) of the current span, when tracing is on."""
    if not enabled():
        return headers
    carrier = dict(headers or {})
    propagate.inject(carrier)
    return carrier or None


def context_from(headers: Mapping[str, Any] | None) -> otel_context.Context:
    """The trace context a message carries (an empty one when it carries none)."""
    return propagate.extract(dict(headers or {}))


def shutdown() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()
        provider.shutdown()
