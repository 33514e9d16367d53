"""The one line each request logs: a handler cancelled before it answered (the client went
away, the server shutting down) is logged as 499, not as a server error."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pytest_aiohttp import AiohttpClient
from structlog.testing import capture_logs

from shared.http import CANCELLED_STATUS, request_context


async def test_a_cancelled_handler_is_logged_as_client_closed(
    aiohttp_client: AiohttpClient,
) -> None:
    entered = asyncio.Event()
    handlers: list[asyncio.Task[object]] = []

    async def waits(_request: web.Request) -> web.Response:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        entered.set()
        await asyncio.sleep(3600)
        return web.Response()

    app = web.Application(middlewares=[request_context])
    app.router.add_get("/wait", waits)
    client = await aiohttp_client(app)
    with capture_logs() as logs:
        pending = asyncio.ensure_future(client.get("/wait"))
        await entered.wait()
        handlers[0].cancel()
        await asyncio.sleep(0.05)
        pending.cancel()
    lines = [line for line in logs if line["event"] == "request"]
    assert [line["status"] for line in lines] == [CANCELLED_STATUS]


async def test_an_answered_request_is_logged_with_its_status(
    aiohttp_client: AiohttpClient,
) -> None:
    async def teapot(_request: web.Request) -> web.Response:
        return web.Response(status=418)

    app = web.Application(middlewares=[request_context])
    app.router.add_get("/tea", teapot)
    client = await aiohttp_client(app)
    with capture_logs() as logs:
        await client.get("/tea")
    assert [line["status"] for line in logs if line["event"] == "request"] == [418]
