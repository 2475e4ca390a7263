"""Request/reply over NATS with typed envelopes, for both sides.

`endpoint` wraps a service handler so that every request gets a reply: a malformed request gets
`invalid_request`, an unexpected failure gets `internal_error` (details stay in the service log),
never silence and a caller's timeout. `BusClient` turns replies back into results or `BusFailure`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NotFoundError as JetStreamNotFound
from pydantic import BaseModel, TypeAdapter, ValidationError

from ossabus.contracts.bus import BusError, Reply

log = logging.getLogger(__name__)
Req = TypeVar("Req", bound=BaseModel)
Res = TypeVar("Res", bound=BaseModel)


class BusFailure(Exception):
    """A request ended in a typed error; raised by handlers to reply with it, and by the client."""

    def __init__(self, error: BusError, no_responders: bool = False):
        super().__init__(error.message)
        self.error = error
        self.no_responders = no_responders  # nobody subscribes to the subject (vs. an answer that is an error)

    @classmethod
    def of(cls, code: str, message: str, param: str | None = None, **extra: Any) -> BusFailure:
        return cls(BusError(code=code, message=message, param=param, **extra))  # type: ignore[arg-type]


def validation_failure(exc: ValidationError) -> BusFailure:
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    return BusFailure.of("invalid_request", f"{param or 'request'}: {first['msg']}", param)


def endpoint(request_model: type[Req], service: str) -> Callable[[Callable[[Req], Awaitable[BaseModel]]], Any]:
    """Decorate `async def handler(request) -> result` into a raw-message handler that always replies."""

    def decorate(handler: Callable[[Req], Awaitable[BaseModel]]):
        # Not functools.wraps: FastStream would read the wrapped signature and try to decode the body.
        async def on_message(msg: NatsMessage) -> dict:
            try:
                request = request_model.model_validate_json(msg.body or b"{}")
                result = await handler(request)
                reply: Reply = Reply.success(result)
            except ValidationError as exc:
                reply = Reply.failure(validation_failure(exc).error)
            except BusFailure as exc:
                reply = Reply.failure(exc.error)
            except JetStreamNotFound:  # a stream or bucket deleted under us; provisioning brings it back
                log.warning("%s: storage missing in %s", service, handler.__name__)
                reply = Reply.failure(BusError(code="unavailable", message="storage is unavailable; try again shortly"))
            except Exception:
                log.exception("%s: unexpected failure in %s", service, handler.__name__)
                reply = Reply.failure(
                    BusError(code="internal_error", message=f"internal error in the {service} service")
                )
            return reply.model_dump(mode="json")

        on_message.__name__ = on_message.__qualname__ = handler.__name__
        on_message.__doc__ = handler.__doc__
        return on_message

    return decorate


class BusClient:
    """Sends typed requests and returns typed results; every failure is a BusFailure."""

    def __init__(self, broker: NatsBroker, timeout: float = 10.0):
        self.broker = broker
        self.timeout = timeout

    async def call(self, subject: str, request: BaseModel, result_type: type[Res], wait_s: float | None = None) -> Res:
        try:
            response = await self.broker.request(
                request.model_dump_json().encode(), subject, timeout=wait_s or self.timeout
            )
        except NoRespondersError as exc:
            message = f"no service answers on {subject}; is it running?"
            raise BusFailure(BusError(code="unavailable", message=message), no_responders=True) from exc
        except NatsTimeout as exc:
            raise BusFailure.of("unavailable", f"no answer on {subject} within {wait_s or self.timeout}s") from exc
        reply = TypeAdapter(Reply[result_type]).validate_json(response.body)  # type: ignore[valid-type]
        if not reply.ok or reply.result is None:
            raise BusFailure(reply.error or BusError(code="internal_error", message="empty reply"))
        return reply.result
