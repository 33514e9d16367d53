"""aiohttp middlewares both services use: request id + one summary line, and the error shape."""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from shared.errors import ApiError, MethodNotAllowed, NotFound, PayloadTooLarge
from shared.logging import log_request, start_log_context

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = structlog.get_logger("http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.-]{8,64}$")
# Ids this process makes up: unique without a random draw per request (a log-correlation
# id, not a secret).
_ID_PREFIX = secrets.token_hex(6)
_id_numbers = itertools.count(1)


# Logged for a request whose handler was cancelled before it answered.
CANCELLED_STATUS = 499


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_numbers):06x}"


def error_response(err: ApiError) -> web.Response:
    """The common error body with the error's status and extra headers."""
    return web.json_response(err.body(), status=err.status, headers=err.headers)


# Told of every answer: the request, the status it got (499 when cancelled) and its seconds.
Observer = Callable[[web.Request, int, float], None]


def request_context_with(observe: Observer | None) -> Middleware:
    """The outermost middleware: a request id bound for every log line of the request, one
    line when it ends, and ``observe`` told of the answer (the control plane's metrics): one
    layer around every request instead of two."""

    @web.middleware
    async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get("X-Request-Id", "")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else new_request_id()
        start_log_context(request_id=request_id)
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            if not response.prepared:
                response.headers["X-Request-Id"] = request_id
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            # The handler was cancelled (the client went away, or the server is shutting
            # down): nginx's "client closed request", not a server error.
            status = CANCELLED_STATUS
            raise
        finally:
            seconds = time.perf_counter() - started
            try:
                if observe is not None:
                    observe(request, status, seconds)
            finally:
                log_request(
                    request.method, request.path, status, round(seconds * 1000, 2), request.remote
                )

    return request_context


request_context = request_context_with(None)
"""Bind a request id for every log line of this request; log one line when it ends."""


ErrorRenderer = Callable[[web.Request, ApiError], web.StreamResponse]


def _render_common(_request: web.Request, err: ApiError) -> web.StreamResponse:
    return error_response(err)


def _http_refusal(exc: web.HTTPException) -> ApiError:
    """aiohttp's other HTTP errors as an error of the same status."""
    kind = type(
        "HttpRefusal",
        (ApiError,),
        {"status": exc.status, "code": exc.reason.lower().replace(" ", "_")},
    )
    error: ApiError = kind(exc.reason)
    return error


def error_shape_with(render: ErrorRenderer) -> Middleware:
    """The error middleware, answering each error as ``render`` draws it (the control plane
    draws the Pterodactyl-compatible API's errors in that API's shape)."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        # What is out before the handler runs ("100 Continue": aiohttp 3.14 counts it as
        # nothing, earlier versions did) is no answer begun.
        begun = request.writer.output_size
        try:
            return await handler(request)
        except Exception as err:
            if request.writer.output_size > begun and request.transport is not None:
                # Part of a streamed answer is out (a download refused midway, a backup that
                # failed to verify): no error answer can follow it. The connection is closed
                # once what is buffered is sent, so the client sees a transfer cut short,
                # never a whole one; the answer below only names the error to the logs and
                # metrics (nothing more can be written).
                log.warning("streamed answer cut short", error=f"{type(err).__name__}: {err}")
                request.transport.close()
            return answer(request, err)

    def answer(request: web.Request, err: Exception) -> web.StreamResponse:
        """The error answer to ``err`` (called while it is being handled)."""
        if isinstance(err, ApiError):
            if err.status >= 500:
                log.warning("request failed", code=err.code, error=err.message)
            return render(request, err)
        if isinstance(err, web.HTTPNotFound):
            return render(request, NotFound("no such route"))
        if isinstance(err, web.HTTPMethodNotAllowed):
            allowed = ",".join(sorted(err.allowed_methods))
            return render(
                request, MethodNotAllowed("method not allowed", headers={"Allow": allowed})
            )
        if isinstance(err, web.HTTPRequestEntityTooLarge):
            return render(request, PayloadTooLarge("request body too large"))
        if isinstance(err, web.HTTPException):
            if err.status < 400:
                raise err
            return render(request, _http_refusal(err))
        log.exception("unhandled error")
        return render(request, ApiError("internal error"))

    return errors


error_shape = error_shape_with(_render_common)
"""Turn domain errors and aiohttp's own HTTP errors into the one error shape."""
