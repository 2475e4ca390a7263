"""`/healthz` (the process is alive) and `/readyz` (bus connected, streams provisioned, manifests loaded)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ossabus.contracts import subjects
from ossabus.contracts.bus import AnyRequest, RegistryStatus
from ossabus.runtime.bus import BusFailure
from ossabus.runtime.provision import missing, provision

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request):
    broker = request.app.state.broker
    checks: dict[str, dict] = {}
    connected = bool(broker.connection and broker.connection.is_connected)
    checks["bus"] = {"ok": connected}
    if connected:
        js = broker.connection.jetstream()
        absent = await missing(js)
        if absent:  # deleted from outside (the bus was open, or an operator slipped): put them back
            log.warning("streams or buckets missing: %s; provisioning them again", ", ".join(absent))
            try:
                await provision(js, request.app.state.topology)
            except Exception:
                log.exception("could not provision the missing streams")
            absent = await missing(js)
        checks["streams"] = {"ok": not absent, "missing": absent}
        try:
            status = await request.app.state.bus.call(subjects.REGISTRY_STATUS, AnyRequest(), RegistryStatus, wait_s=2)
            checks["manifests"] = {
                "ok": status.loaded,
                "count": status.manifests,
                "load_errors": len(status.load_errors),
            }
        except BusFailure as exc:
            checks["manifests"] = {"ok": False, "reason": exc.error.message}
    ready = all(c["ok"] for c in checks.values()) and len(checks) == 3
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )
