"""The telemetry service: usage, cost and metrics from run events.

Accounting arrives with the telemetry issue; until then usage queries are answered `not_implemented`.
"""

from __future__ import annotations

from ossabus.contracts import subjects
from ossabus.contracts.bus import AnyRequest
from ossabus.runtime.bus import endpoint
from ossabus.runtime.service import Service
from ossabus.runtime.unbuilt import not_implemented

NAME = "telemetry"


class TelemetryService(Service):
    name = NAME

    def register(self) -> None:
        self.broker.subscriber(subjects.TELEMETRY_USAGE, queue=subjects.TELEMETRY_QUEUE)(
            endpoint(AnyRequest, NAME)(self.usage)
        )

    async def usage(self, _: AnyRequest):
        raise not_implemented(NAME, "report usage")
