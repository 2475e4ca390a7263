"""A run's events from the bus as OpenAI's Assistants SSE stream (`event: <name>` / `data: <object>`).

The relay subscribes *before* it publishes anything that makes the run move, with an ordered
consumer on the events stream starting at new messages, so no event can slip past; each SSE event
carries the stream sequence as its id. The stream ends after the event that leaves the run
terminal or waiting for tool outputs, with `event: done` / `data: [DONE]`, as OpenAI's does.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator

from fastapi.sse import EventSourceResponse, format_sse_event
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from ossabus.contracts import subjects
from ossabus.contracts.bus import RunEvent
from ossabus.relay.errors import ApiError

log = logging.getLogger(__name__)
END_EVENTS = {
    "thread.run.completed",
    "thread.run.failed",
    "thread.run.cancelled",
    "thread.run.expired",
    "thread.run.incomplete",
    "thread.run.requires_action",
    "error",
}
WORKFLOW_END_EVENTS = {"workflow.run.completed", "workflow.run.failed", "workflow.run.cancelled", "error"}
HEARTBEAT_S = 15


class RunStream:
    """Events of one run. `open` follows new events; `replay` starts at the run's first event or
    after a given sequence (`Last-Event-ID`), so a client that lost its connection resumes exactly."""

    def __init__(self, sub, current_status: str | None = None, end_events: set[str] = END_EVENTS):
        self.sub = sub
        self.end_events = end_events
        # When replaying, a `requires_action` the run has since left is history, not the end.
        self.current_status = current_status

    @classmethod
    async def open(
        cls, js: JetStreamContext, thread_id: str, run_id: str, end_events: set[str] = END_EVENTS
    ) -> RunStream:
        sub = await js.subscribe(
            subjects.run_events_in_thread(thread_id, run_id),
            stream=subjects.EVENTS_STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )
        return cls(sub, end_events=end_events)

    @classmethod
    async def replay(
        cls,
        js: JetStreamContext,
        thread_id: str,
        run_id: str,
        after: int | None,
        current_status: str,
        end_events: set[str] = END_EVENTS,
    ) -> RunStream:
        if after is not None:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1)
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        sub = await js.subscribe(
            subjects.run_events_in_thread(thread_id, run_id),
            stream=subjects.EVENTS_STREAM,
            ordered_consumer=True,
            config=config,
        )
        return cls(sub, current_status, end_events)

    def _ends(self, event: str) -> bool:
        resolved_wait = event == "thread.run.requires_action" and self.current_status not in (None, "requires_action")
        return event in self.end_events and not resolved_wait

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.sub.unsubscribe()

    async def sse(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._events():
                yield chunk
        except Exception:  # the bus failed under us: say so in the stream, as OpenAI's `error` event does
            log.exception("run stream broke")
            error = {
                "message": "the run's event stream was interrupted; retrieve the run to see its state",
                "type": "server_error",
                "param": None,
                "code": "stream_interrupted",
            }
            yield format_sse_event(event="error", data_str=json.dumps(error))
            yield format_sse_event(event="done", data_str="[DONE]")
        finally:
            await self.close()

    async def events(self) -> AsyncIterator[tuple[int, RunEvent] | None]:
        """(stream sequence, event) until the run ends or waits; None every HEARTBEAT_S of silence."""
        while True:
            try:
                msg = await self.sub.next_msg(timeout=HEARTBEAT_S)
            except NatsTimeout:
                yield None
                continue
            event = RunEvent.model_validate_json(msg.data)
            yield msg.metadata.sequence.stream, event
            if self._ends(event.event):
                return

    async def _events(self) -> AsyncIterator[bytes]:
        async for item in self.events():
            if item is None:
                yield format_sse_event(comment="keep-alive")
                continue
            sequence, event = item
            if event.event.startswith("ossabus."):
                continue  # ossabus's own events (reasoning deltas): not in the Assistants stream
            yield format_sse_event(event=event.event, data_str=json.dumps(event.data), id=str(sequence))
        yield format_sse_event(event="done", data_str="[DONE]")

    def response(self) -> EventSourceResponse:
        return EventSourceResponse(self.sse(), headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


def resume_point(last_event_id: str | None, after: int | None) -> int | None:
    """Where a resumed stream starts: `?after=`, else the `Last-Event-ID` header (a stream sequence)."""
    if after is not None or not last_event_id:
        return after
    if not last_event_id.isdigit():
        raise ApiError(
            400, "Last-Event-ID must be the id of an event of this stream", param="Last-Event-ID", code="invalid_value"
        )
    return int(last_event_id)
