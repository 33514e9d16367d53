"""A stopping control plane closes its consoles as going away (1001), all at once: one whose
browser stopped reading does not hold the others, and one that was still being set up when
the stop began (connecting to its node, auditing) is closed as it registers instead of
holding the stop for the whole shutdown timeout."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from control_plane.nodes.console import CLOSE_SECONDS, ConsoleSessions

SERVER, USER = uuid.uuid4(), uuid.uuid4()


def console_app(sessions: ConsoleSessions, registering: asyncio.Event) -> web.Application:
    async def console(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        if request.query.get("late"):
            await registering.wait()  # still being set up
        with sessions.register(SERVER, USER, socket):
            async for _message in socket:
                pass
        return socket

    app = web.Application()
    app.router.add_get("/console", console)
    return app


async def test_consoles_open_and_being_set_up_are_closed_going_away(
    aiohttp_client: AiohttpClient,
) -> None:
    sessions = ConsoleSessions()
    registering = asyncio.Event()
    client = await aiohttp_client(console_app(sessions, registering))
    open_one = await client.ws_connect("/console")
    late_one = await client.ws_connect("/console?late=1")
    async with asyncio.timeout(5):
        while sessions.total() < 1:
            await asyncio.sleep(0.01)

    started = time.monotonic()
    await sessions.close_all()
    assert time.monotonic() - started < CLOSE_SECONDS + 1
    message = await open_one.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.GOING_AWAY

    registering.set()  # set up after the stop began: closed as it registers
    message = await late_one.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.GOING_AWAY
    await open_one.close()
    await late_one.close()
