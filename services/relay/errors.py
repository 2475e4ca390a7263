"""Every error the HTTP edge returns, in OpenAI's shape: `{"error": {message, type, param, code}}`.

Clients' own mistakes get 4xx with the offending parameter named; our failures get a 5xx that says
nothing of internals (the traceback goes to the log, tagged with the request id).
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from nats.errors import NoRespondersError
from nats.js.errors import NotFoundError as NatsNotFound
from starlette.exceptions import HTTPException as StarletteHTTPException

from ossabus.contracts.bus import BusError
from ossabus.runtime.bus import BusFailure
from ossabus.store.kv import TRANSIENT

log = logging.getLogger(__name__)

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
    501: "server_error",
    503: "server_error",
}
_CODE_BY_STATUS = {
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """Raise from a route to answer with an OpenAI-shaped error."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.extra = (
            status,
            message,
            param,
            code,
            extra or {},
        )


def error_response(
    status: int, message: str, *, param: str | None = None, code: str | None = None, extra: dict | None = None
) -> JSONResponse:
    body = {
        "message": message,
        "type": _TYPE_BY_STATUS.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": param,
        "code": code if code is not None else _CODE_BY_STATUS.get(status),
        **(extra or {}),
    }
    return JSONResponse({"error": body}, status_code=status)


def bus_error_response(error: BusError) -> JSONResponse:
    extra = {"diagnostics": [d.model_dump(mode="json") for d in error.diagnostics]} if error.diagnostics else None
    return error_response(error.status, error.message, param=error.param, code=error.code, extra=extra)


def _reprovision(app: FastAPI) -> None:
    """Provision again in the background, once at a time, so the next request finds its bucket."""
    from ossabus.runtime.provision import provision

    if getattr(app.state, "reprovisioning", None) is not None and not app.state.reprovisioning.done():
        return
    connection = app.state.broker.connection

    async def again() -> None:
        try:
            await provision(connection.jetstream(), app.state.topology)
            log.warning("provisioned missing streams and buckets again")
        except Exception:
            log.exception("could not provision the missing streams")

    app.state.reprovisioning = asyncio.get_running_loop().create_task(again())


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path takes, read from the OpenAPI document (FastAPI's included
    routers do not expose their routes' methods to a path match)."""
    import re

    matches: list[tuple[int, set[str]]] = []
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, request.url.path):
            matches.append((template.count("{"), {m.upper() for m in operations}))
    if not matches:
        return []
    fewest = min(n for n, _ in matches)  # `/v1/threads/runs` is that path, not a thread named `runs`
    return sorted(set().union(*(m for n, m in matches if n == fewest)))


def _log_request(what: str, request: Request, exc: Exception) -> None:
    request_id = getattr(request.state, "request_id", None)
    log.warning("%s on %s %s (request %s): %s", what, request.method, request.url.path, request_id, type(exc).__name__)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def on_api_error(_: Request, exc: ApiError):
        return error_response(exc.status, exc.message, param=exc.param, code=exc.code, extra=exc.extra)

    @app.exception_handler(BusFailure)
    async def on_bus_failure(_: Request, exc: BusFailure):
        return bus_error_response(exc.error)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":  # its location is a byte offset, meaningless as a param
            return error_response(400, "the request body is not valid JSON", code="invalid_json")
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        param = ".".join(loc) or None
        return error_response(
            400,
            f"{param or 'request'}: {first.get('msg', 'invalid value')}",
            param=param,
            code="invalid_value",
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        elif exc.status_code == 413:
            message = "request body is too large"
        else:
            message = str(exc.detail)
        response = error_response(exc.status_code, message)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        if exc.status_code == 405:  # every method of the path, not only the first route's (RFC 9110)
            response.headers["Allow"] = ", ".join(allowed_methods(request))
        return response

    @app.exception_handler(NatsNotFound)
    @app.exception_handler(NoRespondersError)
    async def on_storage_missing(request: Request, exc: Exception):
        """A bucket or stream that is gone (deleted from outside); /readyz provisions it again."""
        _log_request("storage unavailable", request, exc)
        _reprovision(request.app)
        return error_response(503, "storage is unavailable; try again shortly", code="storage_unavailable")

    async def on_bus_unavailable(request: Request, exc: Exception):
        """NATS not answering (restarting, a cluster electing a leader): the client may simply retry."""
        _log_request("the bus did not answer", request, exc)
        response = error_response(503, "the message bus is not answering; try again shortly", code="bus_unavailable")
        response.headers["Retry-After"] = "1"
        return response

    for transient in TRANSIENT:
        if transient is not NoRespondersError:  # that one means a missing stream, handled above
            app.add_exception_handler(transient, on_bus_unavailable)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception):
        log.exception(
            "unhandled error on %s %s (request %s)",
            request.method,
            request.url.path,
            getattr(request.state, "request_id", None),
        )
        return error_response(500, "the server had an error while processing your request", code="server_error")
