"""The metrics ossabus derives, as OpenTelemetry instruments exported two ways: Prometheus text
(the relay serves it at `GET /metrics`) and OTLP when an endpoint is configured (off by default).

Names as Prometheus shows them: `ossabus_runs_total{agent,status}`, `ossabus_run_duration_seconds`,
`ossabus_time_to_first_token_seconds`, `ossabus_tokens_total{agent,type=input|output}`,
`ossabus_cost_usd_total{agent}`, `ossabus_tool_calls_total{tool,outcome}` and
`ossabus_tool_duration_seconds{tool}`.
"""

from __future__ import annotations

import functools
import os

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import REGISTRY, generate_latest

from ossabus import __version__
from ossabus.runtime.tracing import otlp_endpoint

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@functools.cache
def _provider() -> MeterProvider:
    """One meter provider per process (the Prometheus reader registers itself in prometheus_client's
    registry, which allows it once)."""
    readers = [PrometheusMetricReader()]
    endpoint = otlp_endpoint()
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        url = endpoint if endpoint.rstrip("/").endswith("/v1/metrics") else endpoint.rstrip("/") + "/v1/metrics"
        interval = int(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "15000"))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=url), export_interval_millis=interval))
    resource = Resource.create({"service.name": "ossabus", "service.version": __version__})
    return MeterProvider(metric_readers=readers, resource=resource)


class Metrics:
    def __init__(self) -> None:
        meter = _provider().get_meter("ossabus.telemetry", __version__)
        self.runs = meter.create_counter("ossabus.runs", description="Runs that ended, by agent and status.")
        self.run_duration = meter.create_histogram(
            "ossabus.run.duration",
            unit="s",
            description="From a run's creation to its end.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        self.ttft = meter.create_histogram(
            "ossabus.time_to_first_token",
            unit="s",
            description="From a run's creation to the model's first output (its first step).",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        self.tokens = meter.create_counter("ossabus.tokens", description="Tokens in and out, by agent.")
        self.cost = meter.create_counter("ossabus.cost.usd", description="Cost in US dollars (litellm's price map).")
        self.tool_calls = meter.create_counter("ossabus.tool.calls", description="Tool calls by tool and outcome.")
        self.tool_duration = meter.create_histogram(
            "ossabus.tool.duration",
            unit="s",
            description="Tool call latency through the dispatcher.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )

    def run_ended(self, agent: str, status: str, duration_s: float | None) -> None:
        self.runs.add(1, {"agent": agent, "status": status})
        if duration_s is not None:
            self.run_duration.record(max(duration_s, 0.0), {"agent": agent, "status": status})

    def first_output(self, agent: str, seconds: float) -> None:
        self.ttft.record(max(seconds, 0.0), {"agent": agent})

    def usage(self, agent: str, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        self.tokens.add(input_tokens, {"agent": agent, "type": "input"})
        self.tokens.add(output_tokens, {"agent": agent, "type": "output"})
        if cost_usd:
            self.cost.add(cost_usd, {"agent": agent})

    def tool_call(self, tool: str, ok: bool, duration_s: float) -> None:
        self.tool_calls.add(1, {"tool": tool, "outcome": "ok" if ok else "error"})
        self.tool_duration.record(max(duration_s, 0.0), {"tool": tool})


def exposition() -> str:
    """Everything this process measures, in Prometheus's text format."""
    return generate_latest(REGISTRY).decode()
