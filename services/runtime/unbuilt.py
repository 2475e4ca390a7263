"""Replies for work a service does not do yet: a typed `not_implemented` error, never a fake success."""

from __future__ import annotations

from ossabus.runtime.bus import BusFailure


def not_implemented(service: str, what: str) -> BusFailure:
    return BusFailure.of("not_implemented", f"the {service} service does not {what} yet in this ossabus version")
