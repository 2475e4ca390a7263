"""The tool dispatcher service: executes tool calls for runs.

Dispatching arrives with the dispatcher issue; until then calls are answered `not_implemented`.
"""

from __future__ import annotations

from ossabus.contracts import subjects
from ossabus.contracts.bus import AnyRequest
from ossabus.runtime.bus import endpoint
from ossabus.runtime.service import Service
from ossabus.runtime.unbuilt import not_implemented

NAME = "dispatcher"


class DispatcherService(Service):
    name = NAME

    def register(self) -> None:
        self.broker.subscriber(subjects.DISPATCHER_CALL, queue=subjects.DISPATCHER_QUEUE)(
            endpoint(AnyRequest, NAME)(self.call_tool)
        )

    async def call_tool(self, _: AnyRequest):
        raise not_implemented(NAME, "execute tool calls")
