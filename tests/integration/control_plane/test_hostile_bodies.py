"""Generated hostile bodies at every route of the route table that takes one, as an
administrator and anonymously: a 4xx in the error shape every time, never a 500.

Two properties. Bodies with something no route may accept (JSON nested past the limit,
numbers JSON cannot hold exactly, NaN, NUL or lone surrogates in strings or keys, bytes that
are not UTF-8, a top level that is no object) are refused before any handler runs: 400 (413
when too large) wherever parsing is reached, 401 for an anonymous caller elsewhere. Bodies
that are merely wrong (any JSON under the routes' field names, huge arrays) may be refused or
even accepted, but never answered with a 500.

One populated app per database serves all examples (hence the health check suppressed).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from control_plane.api.registry import endpoints
from control_plane.api.routing import Access, Endpoint
from tests.integration.control_plane.test_hostile_input import refused
from tests.integration.control_plane.test_route_walks import concrete
from tests.integration.control_plane.test_security_headers import assert_headers
from tests.support.panel import Browser, Panel
from tests.support.world import World, build_world

ROUTES = [endpoint for endpoint in endpoints() if endpoint.body is not None]
CALLERS = ["admin", "anonymous"]
SAFE_INTEGER = 2**53 - 1
JSON_TYPE = {"Content-Type": "application/json"}
# A few hundred requests per database; each property has its own budget.
HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
HOSTILE_EXAMPLES = settings(max_examples=250, deadline=None, suppress_health_check=HEALTH)
WRONG_EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=HEALTH)


def array(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


def obj(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"{" + b",".join(key + b":" + value for key, value in pairs) + b"}"


# --- JSON text no route may accept ----------------------------------------------------------

_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12
)
nul_strings = st.tuples(_text, _text).map(
    lambda parts: orjson.dumps(parts[0])[:-1] + b"\\u0000" + orjson.dumps(parts[1])[1:]
)
broken_strings = st.sampled_from(
    [
        b'"\\ud800"',  # high surrogate, no low one
        b'"\\udbff"',
        b'"\\udc00"',  # low surrogate alone
        b'"x\\ud83d"',
        b'"\\ude00x"',
        b'"\xed\xa0\x80"',  # a surrogate encoded in UTF-8
        b'"\xed\xbf\xbf"',
        b'"\xff"',  # not UTF-8
        b'"\xc0\x80"',  # overlong NUL
        b'"\xf4\x90\x80\x80"',  # past U+10FFFF
        b'"a\x00b"',  # raw NUL
    ]
)
hostile_strings = st.one_of(nul_strings, broken_strings)
huge_numbers = st.one_of(
    st.integers(17, 6000).map(lambda n: b"9" * n),
    st.integers(17, 6000).map(lambda n: b"-" + b"1" * n),
    st.integers(SAFE_INTEGER + 1, 2**80).map(lambda i: str(i).encode()),
    st.integers(-(2**80), -SAFE_INTEGER - 1).map(lambda i: str(i).encode()),
    st.sampled_from(
        [b"NaN", b"Infinity", b"-Infinity", b"1e309", b"-1e309", b"1e400", b"1e16", b"-2e53"]
    ),
    st.integers(310, 2000).map(lambda n: b"1" * n + b".5"),
)


@st.composite
def too_deep(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(65, 5000))
    if draw(st.booleans()):
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


# --- JSON text that is fine as JSON (a route's model may still refuse it) --------------------

plain_scalars = st.one_of(
    st.sampled_from([b"null", b"true", b"false", b'""', b"0", b"-1", b"{}", b"[]"]),
    st.integers(-SAFE_INTEGER, SAFE_INTEGER).map(lambda i: str(i).encode()),
    st.floats(-1e15, 1e15, allow_nan=False).map(orjson.dumps),
    _text.map(orjson.dumps),
)
plain_values = st.recursive(
    plain_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(array),
        st.lists(st.tuples(_text.map(orjson.dumps), children), max_size=4).map(obj),
    ),
    max_leaves=10,
)
huge_arrays = st.tuples(st.integers(1000, 150_000), st.sampled_from([b"0", b'"a"', b"{}"])).map(
    lambda spec: array([spec[1]] * spec[0])
)


def field_names(endpoint: Endpoint) -> st.SearchStrategy[bytes]:
    assert endpoint.body is not None
    names = sorted(endpoint.body.model_fields)
    return st.one_of(st.sampled_from(names), _text).map(orjson.dumps)


@st.composite
def wrap(draw: st.DrawFn, inner: bytes) -> bytes:
    """``inner`` at a random place a few levels down."""
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            inner = array([*draw(st.lists(plain_values, max_size=2)), inner])
        else:
            inner = obj([(draw(_text.map(orjson.dumps)), inner)])
    return inner


class Case:
    """One request; its repr (what Hypothesis prints) cuts the body short."""

    def __init__(self, endpoint: Endpoint, caller: str, body: bytes) -> None:
        self.endpoint = endpoint
        self.caller = caller
        self.body = body

    def __repr__(self) -> str:
        route = f"{self.endpoint.method} {self.endpoint.path}"
        return f"Case({route} as {self.caller}: {self.body[:300]!r}, {len(self.body)} bytes)"


@st.composite
def hostile_cases(draw: st.DrawFn) -> Case:
    endpoint = draw(st.sampled_from(ROUTES))
    caller = draw(st.sampled_from(CALLERS))
    kind = draw(st.sampled_from(["value", "key", "top"]))
    pairs = draw(st.lists(st.tuples(field_names(endpoint), plain_values), max_size=4))
    if kind == "top":
        body = draw(
            st.one_of(
                too_deep(),
                st.sampled_from([b"[]", b"null", b"1", b'"x"', b"true", b"[{}]", b"{", b"{}x"]),
                st.just(b"\xef\xbb\xbf{}"),  # a byte-order mark
                plain_scalars,
                st.lists(plain_values, max_size=4).map(array),
            )
        )
    elif kind == "key":
        key = draw(hostile_strings)
        pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(plain_values)))
        body = obj(pairs)
    else:
        atom = draw(st.one_of(hostile_strings, huge_numbers, too_deep()))
        name = draw(field_names(endpoint))
        # Not under a name that comes again: the last of duplicate names wins.
        pairs = [pair for pair in pairs if pair[0] != name]
        pairs.insert(draw(st.integers(0, len(pairs))), (name, draw(wrap(atom))))
        body = obj(pairs)
    return Case(endpoint, caller, body)


@st.composite
def wrong_cases(draw: st.DrawFn) -> Case:
    endpoint = draw(st.sampled_from(ROUTES))
    caller = draw(st.sampled_from(CALLERS))
    values = st.one_of(plain_values, huge_arrays.flatmap(wrap))
    pairs = draw(st.lists(st.tuples(field_names(endpoint), values), min_size=1, max_size=5))
    return Case(endpoint, caller, obj(pairs))


@dataclass
class Scene:
    world: World
    anonymous: Browser

    def __repr__(self) -> str:
        return "Scene(admin and anonymous browsers on the test world)"


@pytest.fixture
async def scene(panel: Panel) -> Scene:
    return Scene(await build_world(panel), await panel.browser())


async def send(scene: Scene, case: Case) -> ClientResponse:
    browser = scene.world.admin if case.caller == "admin" else scene.anonymous
    path = concrete(case.endpoint, scene.world)
    # A file-like body: aiohttp warns about large bytes (they are written in one go).
    body = io.BytesIO(case.body)
    return await browser.request(case.endpoint.method, path, data=body, headers=JSON_TYPE)


def is_compat(endpoint: Endpoint) -> bool:
    return endpoint.path.startswith(("/api/application", "/api/client"))


async def refused_in_its_shape(response: ClientResponse, endpoint: Endpoint) -> None:
    """Our error shape, or on Pterodactyl's paths its ``{errors: [{code, status, detail}]}``;
    the security headers either way."""
    if not is_compat(endpoint):
        await refused(response, response.status)
        return
    body = await response.json()
    assert set(body) == {"errors"}, body
    assert body["errors"], body
    for error in body["errors"]:  # one per field that was wrong
        assert {"code", "status", "detail"} <= set(error), body
        assert error["status"] == str(response.status), body
    assert_headers(response.headers, hsts=False)


def on_every_route(test: Any) -> Any:
    """Besides the generated cases: each route once as an administrator (who gets as far as
    parsing everywhere), whatever Hypothesis happens to draw."""
    for endpoint in ROUTES:
        assert endpoint.body is not None
        field = sorted(endpoint.body.model_fields)[0]
        body = obj([(orjson.dumps(field), b'"x\\u0000"')])
        test = example(case=Case(endpoint, "admin", body))(test)
    return test


@HOSTILE_EXAMPLES
@on_every_route
@given(case=hostile_cases())
async def test_bodies_no_route_may_accept_are_refused_before_any_handler(
    scene: Scene, case: Case
) -> None:
    response = await send(scene, case)
    parsed = case.caller == "admin" or case.endpoint.access is Access.PUBLIC
    # Pterodactyl's API answers a body it cannot take with its 422 ValidationException.
    invalid = {400, 413, 422} if is_compat(case.endpoint) else {400, 413}
    allowed = invalid if parsed else {401}
    assert response.status in allowed, f"{case!r} gave {response.status}"
    await refused_in_its_shape(response, case.endpoint)


@WRONG_EXAMPLES
@given(case=wrong_cases())
async def test_wrong_bodies_are_never_a_server_error(scene: Scene, case: Case) -> None:
    response = await send(scene, case)
    # 502/503: let through to the test world's node, which answers nothing.
    assert response.status < 500 or response.status in {502, 503}, (
        f"{case!r} gave {response.status}: {await response.text()}"
    )
    if response.status >= 400 and response.status not in {502, 503}:
        await refused_in_its_shape(response, case.endpoint)
