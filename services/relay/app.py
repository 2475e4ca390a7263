"""The relay's HTTP application: routes, error handling, auth (request ids: see edge.py)."""

from __future__ import annotations

from fastapi import FastAPI
from faststream.nats import NatsBroker

from ossabus import __version__
from ossabus.relay import routes_health, routes_manifests
from ossabus.relay.auth import configured_keys, install_auth
from ossabus.relay.errors import install_error_handlers
from ossabus.runtime.bus import BusClient

DEFAULT_MAX_BODY = 8 * 1024 * 1024


def create_app(broker: NatsBroker, bus: BusClient, max_body_size: int = DEFAULT_MAX_BODY) -> FastAPI:
    app = FastAPI(title="ossabus", version=__version__, max_body_size=max_body_size)
    app.state.broker = broker
    app.state.bus = bus
    install_error_handlers(app)
    install_auth(app, configured_keys())

    app.include_router(routes_health.router)
    app.include_router(routes_manifests.router)
    return app
