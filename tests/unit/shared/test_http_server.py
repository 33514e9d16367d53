"""The runner both services serve on: aiohttp's own answers (parser refusals, an exception no
middleware caught) are in the error shape with the app's headers, and no answer, a WebSocket
upgrade or a streamed body included, carries a ``Server`` header; ``run_app`` serves on
uvloop."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from shared.http_server import install_response_headers, run_app
from tests.support.agent_process import free_port
from tests.support.raw_http import RawResponse, exchange, request_bytes

HEADERS = {"X-Frame-Options": "DENY", "Cache-Control": "no-store"}


async def escaped(_request: web.Request) -> web.Response:
    raise RuntimeError("no middleware catches this")


async def streamed(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"chunk")
    await response.write_eof()
    return response


async def socket(request: web.Request) -> web.WebSocketResponse:
    response = web.WebSocketResponse()
    await response.prepare(request)
    await response.close()
    return response


def app(*, headers: bool = True) -> web.Application:
    application = web.Application()
    if headers:
        install_response_headers(application, HEADERS)
    application.router.add_get("/escaped", escaped)
    application.router.add_get("/streamed", streamed)
    application.router.add_get("/socket", socket)
    return application


def assert_app_headers(response: RawResponse) -> None:
    for name, value in HEADERS.items():
        assert response.headers[name] == value
    assert "Server" not in response.headers


@pytest.mark.parametrize("with_headers", [True, False])
async def test_a_parser_refusal_is_the_error_shape_without_the_request(
    aiohttp_server: AiohttpServer, with_headers: bool
) -> None:
    server = await aiohttp_server(app(headers=with_headers))
    assert server.port is not None
    request = request_bytes("GET", "/escaped", {"X-Long": "secret-looking" + "x" * 9000})
    response = await exchange(server.host, server.port, request)
    assert response.status == 400
    assert response.json() == {
        "error": {
            "code": "invalid_request",
            "message": "the request line or a header is too long",
            "details": [],
        }
    }
    assert b"secret-looking" not in response.raw
    if with_headers:
        assert_app_headers(response)
    assert "Server" not in response.headers


async def test_an_exception_no_middleware_caught_is_a_500_in_the_error_shape(
    aiohttp_server: AiohttpServer,
) -> None:
    server = await aiohttp_server(app())
    assert server.port is not None
    response = await exchange(server.host, server.port, request_bytes("GET", "/escaped", {}))
    assert response.status == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert b"RuntimeError" not in response.raw
    assert_app_headers(response)


async def test_streamed_and_ordinary_answers_carry_the_headers_and_no_server_header(
    aiohttp_server: AiohttpServer,
) -> None:
    server = await aiohttp_server(app())
    assert server.port is not None
    for path in ("/streamed", "/no/such/route"):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(request_bytes("GET", path, {"Connection": "close"}))
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        writer.close()
        assert "\r\nServer:" not in head
        assert "\r\nX-Frame-Options: DENY\r\n" in head


async def test_a_websocket_upgrade_has_no_server_header(aiohttp_server: AiohttpServer) -> None:
    server = await aiohttp_server(app())
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(request_bytes("GET", "/socket", upgrade))
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    writer.close()
    assert head.startswith("HTTP/1.1 101")
    assert "\r\nServer:" not in head
    assert "\r\nX-Frame-Options: DENY\r\n" in head


def test_run_app_serves_on_uvloop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def started(_app: web.Application) -> None:
        loops.append(asyncio.get_running_loop())
        raise web.GracefulExit  # as SIGTERM would: run_app returns

    application = app()
    application.on_startup.append(started)
    run_app(application, host="127.0.0.1", port=free_port())
    assert len(loops) == 1
    assert isinstance(loops[0], uvloop.Loop)
