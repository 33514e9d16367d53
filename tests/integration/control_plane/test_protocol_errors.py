"""What aiohttp's HTTP parser refuses itself (a request line or a header over 8190 bytes, too
many headers, bytes that are no HTTP) is answered in the error shape with the security headers,
echoing nothing of the request; and no response names the server's software or its version.

Checked on the app as the tests serve it and on a real ``stellar-cp serve`` process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from multidict import CIMultiDictProxy

from shared.protocol import MAX_TOKEN_LENGTH
from tests.integration.control_plane.test_security_headers import assert_headers
from tests.integration.control_plane.test_startup_validation import GOOD_SECRET
from tests.support.panel import Panel
from tests.support.ports import free_port
from tests.support.raw_http import RawResponse, exchange, request_bytes

# Bytes the answer must not echo back.
MARKER = "EchoCanary7f3a"


def long_request_line() -> bytes:
    return request_bytes("GET", f"/api/v1/auth/session?{MARKER}={'a' * 9000}", {})


# Over both services' header limits: the control plane's 8190 bytes, and the agent's, which
# is raised to twice the longest command token (shared.protocol.MAX_TOKEN_LENGTH).
HEADER_FILLER = "a" * (2 * MAX_TOKEN_LENGTH + 1000)


def long_header() -> bytes:
    return request_bytes("GET", "/healthz", {"X-Filler": MARKER + HEADER_FILLER})


def long_header_name() -> bytes:
    return request_bytes("GET", "/healthz", {f"X-{MARKER}{HEADER_FILLER}": "1"})


def too_many_headers() -> bytes:
    return request_bytes("GET", "/healthz", {f"X-{MARKER}-{i}": MARKER for i in range(200)})


def not_http() -> bytes:
    return f"{MARKER} \x01\x02 nonsense\r\n\r\n".encode()


def bad_header_byte() -> bytes:
    return request_bytes("GET", "/healthz", {"X-Filler": MARKER.encode() + b"\x00"})


ATTACKS = [
    long_request_line,
    long_header,
    long_header_name,
    too_many_headers,
    not_http,
    bad_header_byte,
]


def assert_refused_in_the_error_shape(response: RawResponse) -> None:
    assert response.status == 400, response.raw[:300]
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == "invalid_request"
    assert_headers(CIMultiDictProxy(response.headers), hsts=False)
    assert MARKER.encode() not in response.raw
    assert "Server" not in response.headers


def assert_names_no_software(response: RawResponse) -> None:
    assert "Server" not in response.headers
    for value in response.headers.values():
        assert "aiohttp" not in value.lower()
        assert "python" not in value.lower()


@pytest.mark.parametrize("attack", ATTACKS)
async def test_the_parsers_refusals_are_in_the_error_shape(
    panel: Panel, attack: Callable[[], bytes]
) -> None:
    assert panel.server.port is not None
    response = await exchange(panel.server.host, panel.server.port, attack())
    assert_refused_in_the_error_shape(response)


async def test_no_answer_names_the_server_software(panel: Panel) -> None:
    assert panel.server.port is not None
    for request in (
        request_bytes("GET", "/healthz", {}),
        request_bytes("GET", "/api/v1/no/such/route", {}),
        request_bytes("GET", "/api/v1/auth/session", {}),
        request_bytes("DELETE", "/api/v1/auth/login", {}),
        request_bytes("POST", "/api/v1/auth/login", {"Content-Type": "application/json"}, b"{"),
    ):
        response = await exchange(panel.server.host, panel.server.port, request)
        assert response.status in {200, 400, 401, 404, 405}
        assert_names_no_software(response)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[int]:
    """``stellar-cp serve`` on a migrated SQLite database; stopped with SIGTERM at the end."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STELLAR_")},
        "STELLAR_DATABASE_URL": f"sqlite:///{tmp_path / 'stellar.db'}",
        "STELLAR_AUTH_SECRET": GOOD_SECRET,
        "STELLAR_PORT": str(port),
    }
    cli = [sys.executable, "-m", "control_plane"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True, timeout=60)
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen([*cli, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "stellar-cp serve did not come up"
                time.sleep(0.1)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert code == 0, (tmp_path / "serve.log").read_text()


async def test_stellar_cp_serve_answers_the_parsers_refusals_in_the_error_shape(
    served: int,
) -> None:
    for attack in ATTACKS:
        assert_refused_in_the_error_shape(await exchange("127.0.0.1", served, attack()))
    ok = await exchange("127.0.0.1", served, request_bytes("GET", "/healthz", {}))
    assert ok.status == 200
    assert_names_no_software(ok)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/v1/auth/login", 400),  # not JSON
        ("PUT", "/api/v1/servers/00000000-0000-4000-8000-000000000000/files/upload", 401),
        ("POST", "/no/such/route", 404),
    ],
)
async def test_a_client_that_expects_100_continue_gets_the_error_answer(
    panel: Panel, method: str, path: str, status: int
) -> None:
    """curl's ``-T`` and Guzzle ask ``Expect: 100-continue``: aiohttp sends "100 Continue"
    before any handler runs, and an error answer must still follow it (a connection closed
    without one is for a streamed answer that had begun)."""
    browser = await panel.browser()
    response = await browser.request(method, path, data=b"x" * 2048, expect100=True)
    assert response.status == status, await response.text()
    assert set((await response.json())["error"]) == {"code", "message", "details"}
