"""Cookie headers kept parsed by their text (``security.authn._cookies``): each request gets
its own header's cookies as aiohttp parses them, and what is kept stays bounded."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request

from control_plane.security import authn


def _cookies(header: str) -> dict[str, str]:
    request = make_mocked_request("GET", "/api/v1/servers", headers={"Cookie": header})
    return dict(authn._cookies(request))


def test_each_header_gives_its_own_cookies_as_aiohttp_parses_them() -> None:
    first = 'session=alpha; theme=dark; quoted="a;b"'
    assert _cookies(first) == {"session": "alpha", "theme": "dark", "quoted": "a;b"}
    assert _cookies("session=beta") == {"session": "beta"}
    assert _cookies(first)["session"] == "alpha"  # kept, and still its own
    request = make_mocked_request("GET", "/", headers={"Cookie": first})
    assert authn._cookies(request) is authn._PARSED_COOKIES[first]
    assert dict(request.cookies) == _cookies(first)


def test_what_is_kept_is_bounded() -> None:
    long = "session=" + "x" * authn.COOKIE_HEADER_KEPT_LENGTH
    assert _cookies(long)["session"].startswith("x")
    assert long not in authn._PARSED_COOKIES
    for n in range(authn.COOKIE_HEADERS_KEPT + 10):
        assert _cookies(f"session=token-{n}") == {"session": f"token-{n}"}
        assert len(authn._PARSED_COOKIES) <= authn.COOKIE_HEADERS_KEPT
