"""The executor service: consumes run requests from the work queue.

Running agents arrives with the executor issue. Until then every task taken from the queue is
answered with an `error` run event (`not_implemented`) and terminated, so publishers learn at once
instead of waiting on a run that will never start.
"""

from __future__ import annotations

import logging

from faststream import AckPolicy
from faststream.nats import JStream, PullSub
from faststream.nats.annotations import NatsMessage
from pydantic import ValidationError

from ossabus.contracts import subjects
from ossabus.contracts.bus import AnyRequest, RunEvent, TaskMessage
from ossabus.contracts.ids import new_id
from ossabus.runtime.bus import endpoint
from ossabus.runtime.service import Service
from ossabus.runtime.unbuilt import not_implemented

log = logging.getLogger(__name__)
NAME = "executor"


class ExecutorService(Service):
    name = NAME

    def register(self) -> None:
        self.broker.subscriber(
            subjects.TASKS_ALL,
            stream=JStream(name=subjects.TASKS_STREAM, declare=False),
            durable=subjects.EXECUTOR_CONSUMER,
            pull_sub=PullSub(batch_size=1, timeout=5.0),
            ack_policy=AckPolicy.MANUAL,
        )(self.on_task)
        self.broker.subscriber(subjects.RUN_CANCEL, queue=subjects.EXECUTOR_QUEUE)(
            endpoint(AnyRequest, NAME)(self.cancel_run)
        )

    async def on_task(self, msg: NatsMessage) -> None:
        """Answer the task with an `error` event on its run's subject, then drop it from the queue."""
        thread_id, run_id = new_id("thread"), new_id("run")
        try:
            task = TaskMessage.model_validate_json(msg.body)
            thread_id = task.thread_id or thread_id
            run_id = task.run_id or run_id
            subjects.token(thread_id)
            subjects.token(run_id)
        except (ValidationError, subjects.InvalidSubjectToken):
            thread_id, run_id = new_id("thread"), new_id("run")
        error = not_implemented(NAME, "run agents").error
        event = RunEvent(
            event="error",
            thread_id=thread_id,
            run_id=run_id,
            data={"code": error.code, "message": error.message, "task_subject": msg.raw_message.subject},
        )
        js = self.broker.connection.jetstream()
        await js.publish(subjects.run_event(thread_id, run_id, "error"), event.model_dump_json().encode(), timeout=5)
        await msg.reject()  # term: no redelivery of work nobody here can do
        log.warning("task on %s answered with not_implemented", msg.raw_message.subject)

    async def cancel_run(self, _: AnyRequest):
        raise not_implemented(NAME, "cancel runs")
