"""Handing a run to the executors: a `RunRequest` on the work queue (`ossa.tasks.<agent>`).

The message id (`Nats-Msg-Id`) lets JetStream drop a second copy of the same hand-over, so each
distinct hand-over of a run must have its own; the trace context travels in the headers.
"""

from __future__ import annotations

from nats.js import JetStreamContext

from ossabus.contracts import subjects
from ossabus.contracts.bus import ManifestRecord, RunRequest
from ossabus.contracts.openai_objects import Run
from ossabus.runtime.tracing import headers_with_context

PUBLISH_TIMEOUT_S = 5


async def queue_run(
    js: JetStreamContext,
    run: Run,
    record: ManifestRecord,
    *,
    attempt: int,
    msg_id: str,
    principal: str,
    project: str,
) -> None:
    work = RunRequest(
        run_id=run.id,
        thread_id=run.thread_id,
        agent=record.name,
        agent_version=record.version,
        attempt=attempt,
        principal=principal,
        project=project,
    )
    await js.publish(
        subjects.task(record.name),
        work.model_dump_json().encode(),
        timeout=PUBLISH_TIMEOUT_S,
        headers=headers_with_context({"Nats-Msg-Id": msg_id}),
    )
