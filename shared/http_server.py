"""How both services serve HTTP: aiohttp's runner, with aiohttp's own answers in the error shape.

aiohttp answers some requests before any middleware runs: its HTTP parser refuses a request
line or a header over 8190 bytes, too many headers, or bytes that are no HTTP; and it answers
an exception that escapes every middleware. Those answers are plain text that echoes the
request, without the app's headers, with a ``Server`` header naming Python's and aiohttp's
versions. aiohttp offers no hook for them (aio-libs/aiohttp#3287), so:

- :class:`ApiRequestHandler` (one per connection) overrides ``handle_error``: the common error
  shape, the app's fixed headers, no ``Server`` header, nothing of the request;
- :class:`ApiAppRunner` is ``web.AppRunner`` whose server makes those handlers;
- :func:`run_app` is ``web.run_app`` with that runner (``stellar-cp serve``, ``stellar-agent
  serve``), on uvloop's event loop; the tests serve apps with the same runner, on the same
  loop (``tests/conftest.py``).

uvloop (libuv) instead of asyncio's own loop: the loop's work for each request (the socket's
wake-up, the transport's reads and writes, call-backs) is done in C. With the rest of an
authenticated list request made cheap, that share had grown: A/B (docs/performance.md,
fifth round) uvloop took 8-14 % off the CPU of a list on PostgreSQL (asyncpg's protocol is
written for it; 8 % on an idle machine), 6 % on SQLite, 9 % off ``/healthz``.

Every other answer gets the same headers from :func:`install_response_headers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Literal

import orjson
import structlog
import uvloop
from aiohttp import hdrs, web
from aiohttp.http_exceptions import LineTooLong

from shared.errors import ApiError, InvalidRequest

log = structlog.get_logger("http")

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A second signal this soon after the first is the same request to stop.
REPEAT_SECONDS = 1.0

RESPONSE_HEADERS = web.AppKey("RESPONSE_HEADERS", Mapping[str, str])
"""Headers every answer of the app carries, aiohttp's own refusals included."""


# Adds a response's own headers after the fixed ones (rate-limit headers, a page's CSP).
HeaderHook = Callable[[web.Request, web.StreamResponse], None]


def install_response_headers(
    app: web.Application, headers: Mapping[str, str], *, then: Sequence[HeaderHook] = ()
) -> None:
    """Every response of ``app`` carries ``headers`` and no ``Server`` header; ``then`` add
    their own after those, in order. One ``on_response_prepare`` hook does it all: aiohttp
    awaits each hook of the signal on every response."""
    fixed = app[RESPONSE_HEADERS] = dict(headers)
    more = tuple(then)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(fixed)
        # aiohttp sets it while preparing, before this hook runs: "Python/3.x aiohttp/3.x".
        response.headers.popall(hdrs.SERVER, None)
        for hook in more:
            hook(request, response)

    app.on_response_prepare.append(add_headers)


class _ResponseWithoutServer(web.Response):
    """For answers no ``on_response_prepare`` hook sees."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall(hdrs.SERVER, None)


def _error_body(status: int, exc: BaseException | None) -> dict[str, Any]:
    if status == HTTPStatus.BAD_REQUEST:
        # The parser's own message quotes the request's bytes: none of it is repeated.
        if isinstance(exc, LineTooLong):
            return InvalidRequest("the request line or a header is too long").body()
        return InvalidRequest("the request is not valid HTTP/1.1").body()
    if status == HTTPStatus.INTERNAL_SERVER_ERROR:
        return ApiError("internal error").body()
    phrase = HTTPStatus(status).phrase
    return {"error": {"code": phrase.lower().replace(" ", "_"), "message": phrase, "details": []}}


class ApiRequestHandler(web.RequestHandler):
    """aiohttp's connection handler; its own answers are in the error shape."""

    __slots__ = ("_response_headers",)

    def __init__(
        self, manager: web.Server, *, response_headers: Mapping[str, str], **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._response_headers = response_headers

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # As aiohttp does: part of a response is out, so the connection is broken.
            raise ConnectionError("a response was under way; cannot send an error instead")
        if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            log.error("unhandled error", status=status, exc_info=exc)
        else:
            log.info("request refused by the HTTP parser", status=status, error=type(exc).__name__)
        response = _ResponseWithoutServer(
            body=orjson.dumps(_error_body(status, exc)),
            status=status,
            content_type="application/json",
            charset="utf-8",
            headers=self._response_headers,
        )
        response.force_close()
        return response


class _ApiServer(web.Server):
    """``web.Server`` whose connections are :class:`ApiRequestHandler`."""

    def __init__(
        self,
        handler: Any,
        *,
        response_headers: Mapping[str, str],
        request_factory: Any,
        handler_cancellation: bool,
        loop: asyncio.AbstractEventLoop,
        **handler_options: Any,
    ) -> None:
        super().__init__(
            handler,
            request_factory=request_factory,
            handler_cancellation=handler_cancellation,
            loop=loop,
            **handler_options,
        )
        self._handler_loop = loop
        self._handler_options = {**handler_options, "response_headers": response_headers}

    def __call__(self) -> web.RequestHandler:
        return ApiRequestHandler(self, loop=self._handler_loop, **self._handler_options)


class ApiAppRunner(web.AppRunner):
    """``web.AppRunner`` whose server answers aiohttp's own refusals in the error shape."""

    async def _make_server(self) -> web.Server:
        # aiohttp starts the app and builds its own server; its parts make ours, with the
        # connection options aiohttp gathered (the runner's and the app's handler_args).
        made = await super()._make_server()
        return _ApiServer(
            made.request_handler,
            response_headers=self.app.get(RESPONSE_HEADERS, {}),
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **made._kwargs,
        )


def settle_garbage_collector() -> None:
    """Keep what the service made to start (modules, the app, pools, compiled queries) out of
    the cyclic garbage collector's full passes.

    A full pass visits every object the collector tracks; a started control plane has some
    200,000, nearly all made at start and kept until it stops, and its full passes stopped
    the loop for 100-350 ms each (about one every 6 s under the fleet bench's load: every
    request in flight waited; docs/performance.md). ``gc.freeze`` moves what exists now to
    a generation no pass visits (its objects are still freed by reference counting); passes
    then visit what the service made since.
    """
    gc.collect()
    gc.freeze()


async def _serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    shutdown_timeout: float,
    keepalive_timeout: float,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop in order (see :func:`run_app`)."""
    runner = ApiAppRunner(
        app,
        handle_signals=False,  # ours, below
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=keepalive_timeout,
        access_log=None,
    )
    stopper = _Stopper(asyncio.get_running_loop())
    try:
        # Inside the try, as web.run_app does: a start-up that fails half way (a cleanup
        # context raising) still tears down the contexts that had started.
        await runner.setup()
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        settle_garbage_collector()
        stopper.phase = "serving"
        await stopper.stop.wait()
    finally:
        # Every task is still running here: the listening socket closes, requests under way
        # finish (up to shutdown_timeout), then the cleanup contexts stop their own tasks.
        stopper.phase = "stopping"
        try:
            await runner.cleanup()
        finally:
            stopper.close()


class _Stopper:
    """The service's answer to SIGINT and SIGTERM (see :func:`run_app`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.stop = asyncio.Event()
        self.phase: Literal["starting", "serving", "stopping"] = "starting"
        self._first_at: float | None = None
        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        now = time.monotonic()
        if self.phase == "starting":
            # Stopped where it is, as aiohttp does; a signal right behind it (queued with
            # it) is the same stop, not one that cuts the clean-up short.
            self.phase, self._first_at = "stopping", now
            raise web.GracefulExit
        if self._first_at is None:
            self._first_at = now
            self.stop.set()
            return
        if now - self._first_at < REPEAT_SECONDS:
            return  # the same stop told twice (a terminal's Ctrl-C and a wrapper passing it on)
        # Another one while stopping: at once, as the signal's default action.
        self.close()
        for each in _STOP_SIGNALS:
            signal.signal(each, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # as PID 1 (a container) the kernel ignores a default action

    def close(self) -> None:
        for signum in _STOP_SIGNALS:
            self._loop.remove_signal_handler(signum)


def run_app(
    app: web.Application,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    shutdown_timeout: float = 60.0,
    keepalive_timeout: float = 75.0,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then shut it down in order.

    ``web.run_app`` with :class:`ApiAppRunner`, on uvloop, without aiohttp's access log; an
    error while the app starts propagates. On the signal the service stops taking
    connections, lets the requests under way finish (up to ``shutdown_timeout``), then runs
    its cleanup contexts while its background tasks still run, so that each finishes its
    last work (a node follower writes its history bucket and gives its lease back). Another
    signal while stopping (after ``REPEAT_SECONDS``: one sooner is the same request) ends the
    process at once, by the signal's default action. A signal while the app starts stops the
    start; once a start has failed, none hides its error. (With aiohttp's own signal handling the
    signal ended the loop, and ``uvloop.run`` cancelled every task at once, the requests
    under way and the tasks the cleanup was about to stop included.)
    """
    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        uvloop.run(
            _serve(
                app,
                host=host,
                port=port,
                ssl_context=ssl_context,
                shutdown_timeout=shutdown_timeout,
                keepalive_timeout=keepalive_timeout,
            )
        )
