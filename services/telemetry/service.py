"""The telemetry service: metrics from run events, usage and cost from model calls, tool latency.

Consumes
- the OSSA_EVENTS stream through the durable consumer `ossa-telemetry-events` (run lifecycle
  events and step starts only): runs by agent and status, run duration, time to first output;
- the OSSA_USAGE stream through the durable consumer `ossa-telemetry-usage`: each model call's
  tokens and cost, added to the `ossa_usage` KV counters (per agent and day, and per API key);
- `ossa.telemetry.tools` (the dispatcher's reports): tool calls by outcome, and their latency.
Answers `ossa.telemetry.usage` (UsageQuery -> UsageReport) and `ossa.telemetry.metrics` (the
Prometheus text). Run one replica: metrics live in its memory and usage is added in stream order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from faststream.nats.annotations import NatsMessage
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from ossabus.contracts import subjects
from ossabus.contracts.bus import AnyRequest, RunEvent
from ossabus.contracts.telemetry import MetricsText, ToolReport, UsageQuery, UsageRecord, UsageReport
from ossabus.runtime.bus import endpoint
from ossabus.runtime.service import Service
from ossabus.store import kv as kvs
from ossabus.store.usage import UsageStore
from ossabus.telemetry.metrics import Metrics, exposition

log = logging.getLogger(__name__)
NAME = "telemetry"
TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete"}
TRACKED_RUNS = 100_000
# Usage is added in batches, at most this often: under load, one compare-and-set per counter
# covers hundreds of model calls instead of one each (budgets see it this much later).
USAGE_PAUSE_S = 0.25
STOP_WAIT_S = 2.0  # runs whose start this process remembers (oldest forgotten first)


def agent_of(assistant_id: str | None) -> str:
    """Agent names are DNS-1123 (lowercase), so `asst_` + name with `-` written `X` reads back."""
    if assistant_id and assistant_id.startswith("asst_"):
        return assistant_id.removeprefix("asst_").replace("X", "-")
    return assistant_id or "unknown"


class TelemetryService(Service):
    name = NAME

    def __init__(self, settings):
        super().__init__(settings)
        self.metrics = Metrics()
        self.store: UsageStore | None = None
        self.started_at: OrderedDict[str, float] = OrderedDict()  # run id -> its creation (stream time)
        self.loops: list[asyncio.Task] = []
        self.pulls: list = []  # the pull subscriptions, unsubscribed before the connection drains
        # The loops end on this flag, not on cancellation alone: nats-py turns a cancellation that
        # lands in a fetch on a closed connection into ConnectionClosedError, which a loop that
        # retries on errors would swallow, and a process whose last task never ends never exits.
        self.stopped = False

    def register(self) -> None:
        sub = self.broker.subscriber
        sub(subjects.TELEMETRY_USAGE, queue=subjects.TELEMETRY_QUEUE)(endpoint(UsageQuery, NAME)(self.usage))
        sub(subjects.TELEMETRY_METRICS, queue=subjects.TELEMETRY_QUEUE)(endpoint(AnyRequest, NAME)(self.metrics_text))
        sub(subjects.TELEMETRY_TOOLS, queue=subjects.TELEMETRY_QUEUE)(self.on_tool_report)

    async def started(self) -> None:
        js = self.broker.connection.jetstream()
        self.store = UsageStore(await kvs.leader_reads(js, await js.key_value(subjects.USAGE_BUCKET)))
        events = ConsumerConfig(
            durable_name=subjects.TELEMETRY_EVENTS_CONSUMER,
            filter_subjects=subjects.TELEMETRY_EVENT_FILTERS,
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.ALL,
            max_ack_pending=10_000,
        )
        usage = ConsumerConfig(
            durable_name=subjects.TELEMETRY_USAGE_CONSUMER,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.ALL,
            max_ack_pending=10_000,
        )
        self.loops = [
            asyncio.create_task(self.follow(js, subjects.EVENTS_STREAM, events, self.on_events, pause_s=0.1)),
            asyncio.create_task(self.follow(js, subjects.USAGE_STREAM, usage, self.on_usage, pause_s=USAGE_PAUSE_S)),
        ]

    async def stopping(self) -> None:
        self.stopped = True
        for loop in self.loops:
            loop.cancel()
        # Bounded: a pull request in flight may not honour the cancellation at once (seen: a stop
        # that never finished), and nothing here is worth holding the shutdown for.
        if self.loops:
            await asyncio.wait(self.loops, timeout=STOP_WAIT_S)
        for psub in self.pulls:  # else draining the connection waits for their queues (20 s)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(psub.unsubscribe(), STOP_WAIT_S)

    async def follow(
        self,
        js: JetStreamContext,
        stream: str,
        config: ConsumerConfig,
        handle: Callable[[list], Awaitable[None]],
        pause_s: float = 0.0,
    ) -> None:
        """Fetch batches from a durable consumer forever, in order; a batch is acked once handled.
        `pause_s` between batches lets work pile up into fewer, larger batches."""
        await js.add_consumer(stream, config)
        psub = await js.pull_subscribe_bind(config.durable_name, stream=stream)
        self.pulls.append(psub)
        while not self.stopped:
            try:
                messages = await psub.fetch(500, timeout=1)
            except (NatsTimeout, TimeoutError):
                continue
            except Exception:
                if self.stopped:
                    return
                log.exception("telemetry: fetching from %s failed", stream)
                await asyncio.sleep(1)
                continue
            try:
                await handle(messages)
            except Exception:
                log.exception("telemetry: could not handle %d messages from %s", len(messages), stream)
                for msg in messages:
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=1)
                await asyncio.sleep(1)
                continue
            if messages:  # AckPolicy.ALL: the batch's last ack covers every message before it
                await messages[-1].ack()
            if pause_s:
                await asyncio.sleep(pause_s)

    # --- what is measured ---------------------------------------------------------------------------------

    async def on_events(self, messages: list) -> None:
        for msg in messages:
            with contextlib.suppress(ValidationError):
                self.on_event(RunEvent.model_validate_json(msg.data), msg.metadata.timestamp.timestamp())

    def on_event(self, event: RunEvent, at: float) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        agent = agent_of(data.get("assistant_id"))
        if event.event == "thread.run.created":
            self.started_at[event.run_id] = at
            while len(self.started_at) > TRACKED_RUNS:
                self.started_at.popitem(last=False)
        elif event.event == "thread.run.step.created":
            created = self.started_at.get(event.run_id)
            if created is not None and created > 0:
                self.metrics.first_output(agent, at - created)
                self.started_at[event.run_id] = -created  # negative: first output already measured
        else:
            status = event.event.removeprefix("thread.run.")
            if status in TERMINAL:
                created = self.started_at.pop(event.run_id, None)
                start = abs(created) if created is not None else data.get("created_at")
                self.metrics.run_ended(agent, status, at - start if start else None)

    async def on_usage(self, messages: list) -> None:
        records = []
        for msg in messages:
            with contextlib.suppress(ValidationError):
                records.append((UsageRecord.model_validate_json(msg.data), msg.metadata.sequence.stream))
        assert self.store is not None
        await self.store.add(records)
        for record, _ in records:
            agent = record.agent or subjects.PLAIN_LLM_AGENT
            self.metrics.usage(agent, record.prompt_tokens, record.completion_tokens, record.cost_usd)

    async def on_tool_report(self, msg: NatsMessage) -> None:
        with contextlib.suppress(ValidationError):
            report = ToolReport.model_validate_json(msg.body)
            self.metrics.tool_call(report.tool, report.ok, report.duration_ms / 1000)

    # --- what is answered ------------------------------------------------------------------------------------

    async def usage(self, query: UsageQuery) -> UsageReport:
        assert self.store is not None
        return await self.store.query(query)

    async def metrics_text(self, _: AnyRequest) -> MetricsText:
        return MetricsText(text=exposition())
