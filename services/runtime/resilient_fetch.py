"""A pull subscriber that keeps pulling through every kind of NATS failure.

FastStream's pull loop tolerates a timeout, a closed connection and a 503 from JetStream; any other
error from `fetch` ends its task, silently, and the subscriber never pulls again. That happened when
a node of a three-node cluster was killed: during the leader elections that followed, the executors'
fetches failed otherwise, both executors stopped taking work, and 13 of 30 runs waited forever.
Wrapping the subscription's `fetch` turns those failures into the timeout the loop already handles,
after a short pause and a log line, so the next pull comes once the cluster has settled.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nats.errors import ConnectionClosedError
from nats.js.errors import ServiceUnavailableError

log = logging.getLogger(__name__)
PAUSE_S = 0.5


def keep_fetching(subscriber: Any, what: str) -> None:
    """Make the started FastStream pull `subscriber` survive any failure of a fetch."""
    subscription = subscriber.subscription
    if subscription is None or getattr(subscription, "_ossabus_resilient", False):
        return
    original = subscription.fetch

    async def fetch(*args: Any, **kwargs: Any):
        try:
            return await original(*args, **kwargs)
        except (TimeoutError, ConnectionClosedError, ServiceUnavailableError):
            raise  # the loop's own cases
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("pulling %s failed (%s: %s); pulling again shortly", what, type(exc).__name__, exc)
            await asyncio.sleep(PAUSE_S)
            raise TimeoutError from exc

    subscription.fetch = fetch
    subscription._ossabus_resilient = True
