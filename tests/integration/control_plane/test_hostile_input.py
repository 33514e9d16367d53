"""Hostile input gets a 400 in the error shape, never a 500, on SQLite and PostgreSQL alike:
JSON nested too deep, numbers JSON cannot hold exactly, NUL and lone surrogates (which
PostgreSQL cannot store) in bodies, query strings, paths and headers."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import ClientResponse
from multidict import CIMultiDictProxy

from tests.integration.control_plane.test_security_headers import assert_headers
from tests.support.panel import Browser, Panel
from tests.support.raw_http import RawResponse, exchange, request_bytes
from tests.support.world import BLUEPRINT

LOGIN = "/api/v1/auth/login"
JSON = {"Content-Type": "application/json"}


async def refused(response: ClientResponse | RawResponse, status: int = 400) -> dict[str, Any]:
    """The answer is ``status`` in the error shape with the security headers; its error."""
    if isinstance(response, RawResponse):
        body = response.json()
        headers = CIMultiDictProxy(response.headers)
    else:
        text = await response.text()
        assert response.status == status, text
        body = await response.json()
        headers = response.headers
    assert response.status == status, body
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert_headers(headers, hsts=False)
    error: dict[str, Any] = body["error"]
    return error


async def post_raw(browser: Browser, path: str, body: bytes) -> ClientResponse:
    return await browser.request("POST", path, data=body, headers=JSON)


async def test_json_nested_too_deep_is_refused_at_sign_in(panel: Panel) -> None:
    anonymous = await panel.browser()
    for depth in (65, 1000, 100_000):
        body = b'{"email": ' + b"[" * depth + b"]" * depth + b', "password": "x"}'
        error = await refused(await post_raw(anonymous, LOGIN, body))
        assert "nested" in error["message"]


async def test_json_nested_64_deep_is_parsed(panel: Panel) -> None:
    anonymous = await panel.browser()
    body = b'{"email": ' + b"[" * 63 + b"]" * 63 + b', "password": "x"}'
    error = await refused(await post_raw(anonymous, LOGIN, body))
    # Parsed, then refused by the model: an array is no e-mail address.
    assert error["details"][0]["loc"] == ["email"]


NUMBERS_NO_DOUBLE_HOLDS = [
    b"1" * 5000,
    b"-" + b"9" * 5000,
    b"1" * 5000 + b".5",
    b"18446744073709551616",  # 2**64
    b"9223372036854775808",  # 2**63: past any database's BIGINT
    b"9007199254740993",  # 2**53 + 1: a double cannot hold it exactly
    b"1e309",
    b"-1e309",
    b"1e19",
    b"NaN",
    b"Infinity",
    b"-Infinity",
]


async def test_numbers_json_cannot_hold_exactly_are_refused(panel: Panel) -> None:
    anonymous = await panel.browser()
    for number in NUMBERS_NO_DOUBLE_HOLDS:
        body = b'{"email": ' + number + b', "password": "x"}'
        await refused(await post_raw(anonymous, LOGIN, body))


async def test_a_5000_digit_integer_is_refused_where_an_integer_belongs(panel: Panel) -> None:
    admin = await panel.signed_in("admin@example.org", admin=True)
    body = b'{"name": "eu-1", "url": "https://n.example.org:8443", "memory_mib": ' + b"7" * 5000
    await refused(await post_raw(admin, "/api/v1/nodes", body + b"}"))


async def test_an_integer_past_2_53_is_refused_not_rounded(panel: Panel) -> None:
    """orjson reads 2**64 + 1 as a float, which an ``int`` field would take as 2**64."""
    admin = await panel.signed_in("admin@example.org", admin=True)
    motd, seed = BLUEPRINT["variables"]
    template = orjson.dumps({**BLUEPRINT, "variables": [motd, {**seed, "min": "@min@"}]})
    for number, status in ((b"18446744073709551617", 400), (b"9007199254740992", 400), (b"5", 201)):
        response = await post_raw(admin, "/api/v1/blueprints", template.replace(b'"@min@"', number))
        assert response.status == status, await response.text()
        if status == 400:
            assert (await refused(response))["details"][0]["loc"] == ["variables"]


async def test_nul_in_the_email_at_sign_in_is_refused(panel: Panel) -> None:
    anonymous = await panel.browser()
    for email in ("admin\u0000@example.org", "\u0000"):
        response = await anonymous.request(
            "POST", LOGIN, json={"email": email, "password": "correct horse battery staple"}
        )
        error = await refused(response)
        assert error["details"][0]["loc"] == ["email"]
        assert "\u0000" not in str(error)


async def test_nul_or_a_lone_surrogate_in_an_api_key_name_is_refused(panel: Panel) -> None:
    alice = await panel.signed_in("alice@example.org")
    path = "/api/v1/account/api-keys"
    response = await alice.request("POST", path, json={"name": "ci\u0000bot", "scopes": ["read"]})
    assert (await refused(response))["details"][0]["loc"] == ["name"]
    response = await alice.request("POST", path, json={"name": "ci\ud800bot", "scopes": ["read"]})
    await refused(response)
    assert (await alice.json("GET", path))["data"] == []


async def test_nul_in_a_key_of_the_body_is_refused(panel: Panel) -> None:
    anonymous = await panel.browser()
    body = b'{"email": "a@b.cd", "password": "x", "x\\u0000": 1}'
    await refused(await post_raw(anonymous, LOGIN, body))


async def test_lone_surrogates_and_invalid_utf8_are_refused(panel: Panel) -> None:
    anonymous = await panel.browser()
    for string in (
        b'"\\ud800"',  # an escaped high surrogate with no low one
        b'"a\\udc00b"',  # an escaped low surrogate alone
        b'"\xed\xa0\x80"',  # a surrogate encoded in (invalid) UTF-8
        b'"\xff"',  # not UTF-8 at all
    ):
        body = b'{"email": ' + string + b', "password": "x"}'
        await refused(await post_raw(anonymous, LOGIN, body))
        await refused(await post_raw(anonymous, LOGIN, b'{"email": "a@b.cd", ' + string + b": 1}"))


async def test_nul_in_a_query_parameter_is_refused(panel: Panel) -> None:
    admin = await panel.signed_in("admin@example.org", admin=True)
    for query in ("action=%00", "target_type=a%00b", "target_id=%00", "%00=1"):
        error = await refused(await admin.request("GET", f"/api/v1/audit?{query}"))
        assert "\u0000" not in str(error)


async def test_nul_in_the_path_is_refused(panel: Panel) -> None:
    admin = await panel.signed_in("admin@example.org", admin=True)
    # Without the CSRF token: the refusal is audited with the path, which must not hold a NUL.
    admin.send_csrf = False
    for method in ("GET", "POST"):
        await refused(await admin.request(method, "/api/v1/servers/%00"))


async def test_headers_that_are_not_utf8_are_refused(panel: Panel) -> None:
    host, port = panel.server.host, panel.server.port
    assert port is not None
    body = b'{"email": "a@b.cd", "password": "x"}'
    cases: list[tuple[str, bytes]] = [
        ("User-Agent", b"bot\xff\xfe"),
        ("User-Agent", b"\xed\xa0\x80"),
        ("Authorization", b"Bearer sk_\xff"),
        ("Cookie", b"stellar_session=\xff"),
    ]
    for name, value in cases:
        headers: dict[str, str | bytes] = {"Content-Type": "application/json", name: value}
        response = await exchange(host, port, request_bytes("POST", LOGIN, headers, body))
        await refused(response)


async def test_a_body_that_is_no_object_is_refused(panel: Panel) -> None:
    anonymous = await panel.browser()
    for body in (b"[]", b"null", b"1", b'"x"', b"true", b"", b" ", b"\xef\xbb\xbf{}"):
        response = await post_raw(anonymous, LOGIN, body)
        await refused(response)
