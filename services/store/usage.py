"""Usage and cost per agent, per API key and per day, in the `ossa_usage` KV bucket.

Each model call's record is added to three counters: the agent's day (what budgets count), the
agent's day in the caller's project, and in that project for the API key
(`day.<YYYY-MM-DD>.agent.<agent>[.project.<project>[.key.<principal>]]`, UTC days), with compare-and-set, a
batch of records at a time. A counter remembers the last OSSA_USAGE sequence it added, so a record
delivered again after a crash is not counted twice (the telemetry service adds them in stream order).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from ossabus.contracts import subjects
from ossabus.contracts.telemetry import UsageCounters, UsageQuery, UsageRecord, UsageReport, UsageRow
from ossabus.store import kv as kvs


def day_of(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def today() -> str:
    return day_of(time.time())


class UsageStore:
    def __init__(self, kv: KeyValue):
        self.kv = kv

    async def add(self, records: list[tuple[UsageRecord, int]]) -> None:
        """Add records (each with its OSSA_USAGE sequence) to their counters: one compare-and-set per
        counter for the whole batch, however many records it holds."""
        by_key: dict[str, list[tuple[UsageRecord, int]]] = {}
        for record, sequence in records:
            day, agent = day_of(record.at), record.agent or subjects.PLAIN_LLM_AGENT
            for key in (
                subjects.usage_key(day, agent),
                subjects.usage_key(day, agent, record.project),
                subjects.usage_key(day, agent, record.project, record.principal),
            ):
                by_key.setdefault(key, []).append((record, sequence))
        for key, batch in by_key.items():
            await self._add(key, batch)

    async def _add(self, key: str, batch: list[tuple[UsageRecord, int]]) -> None:
        for _ in range(kvs.CAS_ATTEMPTS):
            current = await kvs.read(self.kv, key, UsageCounters)
            counters = current[0] if current else UsageCounters()
            fresh = [(r, seq) for r, seq in batch if seq > counters.last_seq]  # not added before a redelivery
            if not fresh:
                return
            for record, sequence in fresh:
                counters.requests += 1
                counters.prompt_tokens += record.prompt_tokens
                counters.completion_tokens += record.completion_tokens
                counters.total_tokens += record.prompt_tokens + record.completion_tokens
                counters.cost_usd = round(counters.cost_usd + record.cost_usd, 10)
                counters.last_seq = max(counters.last_seq, sequence)
            value = counters.model_dump_json().encode()
            try:
                if current is None:
                    await self.kv.create(key, value)
                else:
                    await self.kv.update(key, value, last=current[1])
                return
            except KeyWrongLastSequenceError:
                continue
            except Exception as exc:  # created by someone else meanwhile
                if "wrong last sequence" not in str(exc).lower():
                    raise
        raise kvs.Conflict(key)

    async def day_total(self, agent: str, day: str | None = None) -> UsageCounters:
        current = await kvs.read(self.kv, subjects.usage_key(day or today(), agent), UsageCounters)
        return current[0] if current else UsageCounters()

    async def query(self, query: UsageQuery) -> UsageReport:
        """Rows of one project (its day rows and its keys' rows), or, without a project, of all of them
        with the agents' day totals; `total` adds up the coarsest rows listed."""
        agent = subjects.token(query.agent) if query.agent else "*"
        project = subjects.token(query.project) if query.project else "*"
        base = f"day.*.agent.{agent}.project.{project}"
        if query.principal:
            items = await kvs.scan_items(self.kv, f"{base}.key.{subjects.token(query.principal)}", UsageCounters)
        else:  # the project rows and (`.>`) their per-key rows
            items = await kvs.scan_items(self.kv, base, UsageCounters)
            items += await kvs.scan_items(self.kv, f"{base}.>", UsageCounters)
            if not query.project:
                items += await kvs.scan_items(self.kv, f"day.*.agent.{agent}", UsageCounters)
        coarsest = 6 if query.principal else 4 if query.project else 2
        rows, total = [], UsageCounters()
        for key, counters in sorted(items):
            parts = key.split(".")
            day, row_agent = parts[1], parts[3]
            row_project = parts[5] if len(parts) > 5 else None
            principal = parts[7] if len(parts) > 7 else None
            if (query.from_day and day < query.from_day) or (query.to_day and day > query.to_day):
                continue
            rows.append(
                UsageRow(
                    day=day,
                    agent=row_agent,
                    project=row_project,
                    principal=principal,
                    **counters.model_dump(exclude={"last_seq"}),
                )
            )
            if len(parts) - 2 == coarsest:
                total.requests += counters.requests
                total.prompt_tokens += counters.prompt_tokens
                total.completion_tokens += counters.completion_tokens
                total.total_tokens += counters.total_tokens
                total.cost_usd = round(total.cost_usd + counters.cost_usd, 10)
        return UsageReport(data=rows, total=total)
