"""OutboundClient against real local servers: redirects, byte caps, DNS rebinding, TLS names.

Every server listens on 127.0.0.1 and is reached through a made-up name that an injected
resolver maps to 127.0.0.1, with ``allow_for_tests`` letting that one address through. The
``connection_attempts`` fixture records every TCP connect and refuses any that is not to
127.0.0.1, so even a broken guard could not send a packet elsewhere.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from ipaddress import ip_network
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.outbound import OutboundClient, OutboundResponse
from shared.ssrf import OutboundBodyTooLarge, OutboundFetchFailed, UnsafeURL

ServerFactory = Callable[..., Any]
LOCAL_ONLY = frozenset({ip_network("127.0.0.1/32")})
HITS = web.AppKey("hits", list[str])
BODY = b"x" * 10_000


class CountingResolver:
    """Answers from a script per name: the n-th lookup of a name gets the n-th answer (or last)."""

    def __init__(self, script: dict[str, Sequence[Sequence[str]]]) -> None:
        self.script = script
        self.lookups: list[str] = []

    async def __call__(self, host: str) -> Sequence[str]:
        answers = self.script.get(host)
        if answers is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        seen = self.lookups.count(host)
        self.lookups.append(host)
        return answers[min(seen, len(answers) - 1)]


def local_names(*names: str) -> CountingResolver:
    return CountingResolver({name: [["127.0.0.1"]] for name in names})


@pytest.fixture
async def connection_attempts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (address, port) a socket connect was tried to; only 127.0.0.1 goes through."""
    loop = asyncio.get_running_loop()
    real_sock_connect = loop.sock_connect
    attempts: list[tuple[str, int]] = []

    async def loopback_only(sock: socket.socket, address: Any) -> None:
        attempts.append((str(address[0]), int(address[1])))
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(f"test network jail refused {address!r}")
        await real_sock_connect(sock, address)

    monkeypatch.setattr(loop, "sock_connect", loopback_only)
    return attempts


def origin_app() -> web.Application:
    """The remote end: plain pages, large bodies and redirects of every kind."""
    routes = web.RouteTableDef()

    @routes.get("/hello")
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    @routes.get("/big")
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=BODY)

    @routes.get("/big-chunked")
    async def big_chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for offset in range(0, len(BODY), 1000):
            await response.write(BODY[offset : offset + 1000])
        await response.write_eof()
        return response

    @routes.get("/secret")
    async def secret(request: web.Request) -> web.Response:
        return web.Response(text="internal only")

    @routes.get("/redirect")
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    @routes.post("/see-other")
    async def see_other(request: web.Request) -> web.Response:
        raise web.HTTPSeeOther("/echo")

    @routes.route("*", "/temporary")
    async def temporary(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(request.query["to"])

    @routes.route("*", "/echo")
    async def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "method": request.method,
                "body": (await request.read()).decode(),
                "authorization": request.headers.get("Authorization"),
                "host": request.headers.get("Host"),
            }
        )

    @web.middleware
    async def record_hit(
        request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        request.app[HITS].append(request.path)
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[record_hit])
    app[HITS] = []
    app.add_routes(routes)
    return app


@pytest.fixture
async def origin(aiohttp_server: ServerFactory) -> TestServer:
    server: TestServer = await aiohttp_server(origin_app())
    return server


@pytest.fixture
async def client() -> AsyncIterator[OutboundClient]:
    async with OutboundClient(
        resolver=local_names("origin.test", "other.test"), allow_for_tests=LOCAL_ONLY
    ) as outbound:
        yield outbound


async def read_into(buffer: bytearray, response: OutboundResponse) -> None:
    async for chunk in response.iter_chunks(chunk_size=1000):
        buffer += chunk


def hits(server: TestServer) -> list[str]:
    return server.app[HITS]


async def test_fetch_through_a_checked_name_reads_the_body(
    client: OutboundClient, origin: TestServer, connection_attempts: list[tuple[str, int]]
) -> None:
    async with client.fetch(
        f"http://origin.test:{origin.port}/hello", max_bytes=100, timeout_seconds=5
    ) as response:
        body = await response.read()

    assert (response.status, body) == (200, b"hello")
    assert connection_attempts == [("127.0.0.1", origin.port)]


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
async def test_body_past_the_byte_cap_is_refused(
    client: OutboundClient, origin: TestServer, path: str
) -> None:
    received = bytearray()
    async with client.fetch(
        f"http://origin.test:{origin.port}{path}", max_bytes=4096, timeout_seconds=5
    ) as response:
        with pytest.raises(OutboundBodyTooLarge):
            await read_into(received, response)

    assert len(received) <= 4096


async def test_body_exactly_at_the_byte_cap_is_read(
    client: OutboundClient, origin: TestServer
) -> None:
    async with client.fetch(
        f"http://origin.test:{origin.port}/big-chunked", max_bytes=len(BODY), timeout_seconds=5
    ) as response:
        assert await response.read() == BODY


@pytest.mark.parametrize(
    "private_target",
    [
        "http://127.0.0.1:{port}/secret",
        "http://2130706433:{port}/secret",
        "http://[::ffff:127.0.0.1]:{port}/secret",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://internal.test:{port}/secret",
    ],
)
async def test_redirect_to_a_private_address_is_refused_before_connecting(
    origin: TestServer, connection_attempts: list[tuple[str, int]], private_target: str
) -> None:
    resolver = CountingResolver({"origin.test": [["127.0.0.1"]], "internal.test": [["10.0.0.1"]]})
    target = private_target.format(port=origin.port)
    async with OutboundClient(resolver=resolver, allow_for_tests=LOCAL_ONLY) as outbound:
        with pytest.raises(UnsafeURL):
            async with outbound.fetch(
                f"http://origin.test:{origin.port}/redirect?to={target}",
                max_bytes=100,
                timeout_seconds=5,
            ):
                pass

    assert hits(origin) == ["/redirect"]
    assert connection_attempts == [("127.0.0.1", origin.port)]


async def test_redirect_to_a_public_name_is_followed_and_rechecked(
    origin: TestServer, connection_attempts: list[tuple[str, int]]
) -> None:
    resolver = local_names("origin.test", "other.test")
    next_hop = f"http://other.test:{origin.port}/hello"
    async with (
        OutboundClient(resolver=resolver, allow_for_tests=LOCAL_ONLY) as outbound,
        outbound.fetch(
            f"http://origin.test:{origin.port}/redirect?to={next_hop}",
            max_bytes=100,
            timeout_seconds=5,
        ) as response,
    ):
        assert await response.read() == b"hello"

    assert str(response.url) == f"http://other.test:{origin.port}/hello"
    assert resolver.lookups == ["origin.test", "other.test"]
    assert hits(origin) == ["/redirect", "/hello"]


async def test_too_many_redirects_fail(client: OutboundClient, origin: TestServer) -> None:
    with pytest.raises(OutboundFetchFailed, match="more than 2 redirects"):
        async with client.fetch(
            f"http://origin.test:{origin.port}/redirect?to=/redirect?to=/redirect?to=/hello",
            max_bytes=100,
            timeout_seconds=5,
            max_redirects=2,
        ):
            pass

    assert hits(origin) == ["/redirect"] * 3


async def test_see_other_continues_as_get_without_the_body(
    client: OutboundClient, origin: TestServer
) -> None:
    async with client.fetch(
        f"http://origin.test:{origin.port}/see-other",
        method="POST",
        body=b'{"event": "server.started"}',
        max_bytes=1000,
        timeout_seconds=5,
    ) as response:
        echoed = await response.read()

    assert echoed == b'{"method": "GET", "body": "", "authorization": null, "host": "%s"}' % (
        f"origin.test:{origin.port}".encode()
    )


@pytest.mark.parametrize(
    ("next_host", "authorization_kept"), [("origin.test", True), ("other.test", False)]
)
async def test_credentials_are_not_forwarded_to_another_origin(
    client: OutboundClient, origin: TestServer, next_host: str, authorization_kept: bool
) -> None:
    async with client.fetch(
        f"http://origin.test:{origin.port}/temporary?to=http://{next_host}:{origin.port}/echo",
        method="POST",
        body=b"payload",
        headers={"Authorization": "Bearer secret"},
        max_bytes=1000,
        timeout_seconds=5,
    ) as response:
        echoed = await response.read()

    assert b'"method": "POST", "body": "payload"' in echoed
    assert (b"Bearer secret" in echoed) is authorization_kept


async def test_dns_rebinding_cannot_redirect_the_connection(
    origin: TestServer, connection_attempts: list[tuple[str, int]]
) -> None:
    # First answer passes the check; every later lookup would point inside the network.
    resolver = CountingResolver({"rebind.test": [["127.0.0.1"], ["10.0.0.1"]]})
    url = f"http://rebind.test:{origin.port}/hello"
    async with OutboundClient(resolver=resolver, allow_for_tests=LOCAL_ONLY) as outbound:
        async with outbound.fetch(url, max_bytes=100, timeout_seconds=5) as response:
            assert await response.read() == b"hello"
        assert resolver.lookups == ["rebind.test"]
        assert connection_attempts == [("127.0.0.1", origin.port)]

        # The next fetch looks the name up again, sees the private answer and refuses.
        with pytest.raises(UnsafeURL):
            async with outbound.fetch(url, max_bytes=100, timeout_seconds=5):
                pass

    assert resolver.lookups == ["rebind.test", "rebind.test"]
    assert connection_attempts == [("127.0.0.1", origin.port)]
    assert hits(origin) == ["/hello"]


async def test_proxy_settings_from_the_environment_are_ignored(
    client: OutboundClient,
    origin: TestServer,
    connection_attempts: list[tuple[str, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(variable, "http://10.9.9.9:3128")

    async with client.fetch(
        f"http://origin.test:{origin.port}/hello", max_bytes=100, timeout_seconds=5
    ) as response:
        assert await response.read() == b"hello"

    assert connection_attempts == [("127.0.0.1", origin.port)]


async def test_slow_server_hits_the_total_timeout(
    aiohttp_server: ServerFactory, client: OutboundClient
) -> None:
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/", stall)
    server: TestServer = await aiohttp_server(app)

    with pytest.raises(OutboundFetchFailed, match="timed out"):
        async with client.fetch(
            f"http://origin.test:{server.port}/", max_bytes=100, timeout_seconds=0.3
        ):
            pass


# --- TLS: the certificate is checked against the name, not the pinned address ---------------


def self_signed_certificate(name: str) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) valid for the DNS name ``name`` only."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture
async def tls_server(tmp_path: Any) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    """An HTTPS server on 127.0.0.1 whose certificate names ``tls.test``; and a client context
    that trusts exactly that certificate."""
    certificate_pem, key_pem = self_signed_certificate("tls.test")
    (tmp_path / "cert.pem").write_bytes(certificate_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello over TLS to {request.host}")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        yield port, ssl.create_default_context(cadata=certificate_pem.decode())
    finally:
        await runner.cleanup()


async def test_tls_verifies_the_certificate_against_the_checked_name(
    tls_server: tuple[int, ssl.SSLContext], connection_attempts: list[tuple[str, int]]
) -> None:
    port, trusting_context = tls_server
    async with OutboundClient(
        resolver=local_names("tls.test", "impostor.test"),
        ssl_context=trusting_context,
        allow_for_tests=LOCAL_ONLY,
    ) as outbound:
        async with outbound.fetch(
            f"https://tls.test:{port}/", max_bytes=100, timeout_seconds=5
        ) as response:
            assert await response.read() == f"hello over TLS to tls.test:{port}".encode()

        # Same address, same certificate, but the name does not match it.
        with pytest.raises(OutboundFetchFailed, match="TLS"):
            async with outbound.fetch(
                f"https://impostor.test:{port}/", max_bytes=100, timeout_seconds=5
            ):
                pass

    assert connection_attempts == [("127.0.0.1", port), ("127.0.0.1", port)]
