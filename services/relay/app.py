"""The relay's HTTP application: routes, error handling, auth (request ids: see edge.py)."""

from __future__ import annotations

from fastapi import FastAPI
from faststream.nats import NatsBroker

from ossabus import __version__
from ossabus.registry.documents import MAX_MANIFEST_BYTES
from ossabus.relay import (
    routes_assistants,
    routes_asyncapi,
    routes_chat,
    routes_conversations,
    routes_embeddings,
    routes_file_batches,
    routes_files,
    routes_health,
    routes_manifests,
    routes_models,
    routes_playground,
    routes_response_extras,
    routes_responses,
    routes_runs,
    routes_telemetry,
    routes_threads,
    routes_vector_stores,
    routes_vercel,
    routes_workflows,
)
from ossabus.relay.auth import KeyRing, configured_keys, install_auth
from ossabus.relay.body_guard import BodyGuard
from ossabus.relay.catalog import Catalog
from ossabus.relay.errors import install_error_handlers
from ossabus.relay.openapi_doc import install_openapi
from ossabus.runtime import tracing
from ossabus.runtime.bus import BusClient
from ossabus.runtime.provision import Topology
from ossabus.store.state import State

DEFAULT_MAX_BODY = 8 * 1024 * 1024
# paths whose bodies have their own bound instead of `max_body_size`
BODY_LIMITS = {
    "/v1/files": routes_files.HARD_LIMIT,
    "/v1/ossa/manifests": MAX_MANIFEST_BYTES,
    "/v1/ossa/validate": MAX_MANIFEST_BYTES,
}


def create_app(
    broker: NatsBroker,
    bus: BusClient,
    state: State,
    max_body_size: int = DEFAULT_MAX_BODY,
    keys: KeyRing | None = None,
    topology: Topology | None = None,
) -> FastAPI:
    app = FastAPI(title="ossabus", version=__version__)  # bodies are bounded by BodyGuard
    app.state.broker = broker
    app.state.bus = bus
    app.state.state = state
    app.state.catalog = Catalog(bus)
    app.state.topology = topology or Topology()
    install_error_handlers(app)
    install_openapi(app)
    # inside auth (added after it, so outer): no key, no body read
    app.add_middleware(BodyGuard, max_body_size=max_body_size, limits=BODY_LIMITS)
    install_auth(app, keys if keys is not None else configured_keys())

    if tracing.enabled():  # an HTTP server span per request, parent of everything the request causes
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        app.add_middleware(OpenTelemetryMiddleware, exclude_spans=["send", "receive"])
    for module in (  # the router tries them in this order: the per-request hot path first
        routes_chat,
        routes_asyncapi,
        routes_health,
        routes_manifests,
        routes_models,
        routes_response_extras,
        routes_responses,
        routes_conversations,
        routes_embeddings,
        routes_files,
        routes_assistants,
        routes_runs,
        routes_threads,
        routes_vector_stores,
        routes_file_batches,
        routes_vercel,
        routes_playground,
        routes_telemetry,
        routes_workflows,
    ):
        app.include_router(module.router)
    return app
