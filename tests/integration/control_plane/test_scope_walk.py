"""Walk the route table with API keys of every scope set and role: a key never does more than
its scopes say, whoever owns it.

``read`` opens safe methods, ``write`` everything a user may do (and so reads too), ``admin``
the administration routes and other users' servers; an administrator's key without ``admin``
is a user's key. Each role gets a fresh world, since the routes it is allowed on really run.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Literal

import pytest
from aiohttp import ClientResponse

from control_plane.api.registry import endpoints
from control_plane.api.routing import Access, Endpoint
from control_plane.security.permissions import VIEW
from tests.integration.control_plane.test_route_walks import concrete
from tests.support.compat import error_of
from tests.support.panel import Browser, Panel
from tests.support.world import World, build_world

Outcome = Literal["allowed", "forbidden", "hidden"]
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
# Path parameters naming objects that belong to alice herself (never an administrator's)...
PERSONAL = ("{key_id}", "{session_id}", "{passkey_id}")
# ...except on the administration routes that act on a user's own objects (revoking a key).
USERS_OBJECTS = "/api/v1/users/{user_id}/"
# The refusals of the authorisation decision; any other answer means "let through".
AUTHZ_MESSAGES = ("lack", "administrators only", "browser session")
ACCOUNT = "/api/v1/account/"
# Pterodactyl's account routes: the same account security, from a browser session only,
# except what a key may do on ours too (list its owner's keys, change the password).
COMPAT_ACCOUNT = "/api/client/account/"
COMPAT_ACCOUNT_FOR_KEYS = {
    ("GET", "/api/client/account/api-keys"),
    ("GET", "/api/client/account/ssh-keys"),
    ("GET", "/api/client/account/activity"),
    ("PUT", "/api/client/account/password"),
}


@dataclass(frozen=True)
class Role:
    name: str
    holder: Literal["alice", "admin", "carol"]
    scopes: tuple[str, ...]

    @property
    def acts_as_admin(self) -> bool:
        return self.holder == "admin" and "admin" in self.scopes


ROLES = [
    Role("alice read key", "alice", ("read",)),
    Role("alice write key", "alice", ("write",)),
    Role("alice read+write key", "alice", ("read", "write")),
    Role("admin key without admin scope", "admin", ("read", "write")),
    Role("admin read+admin key", "admin", ("read", "admin")),
    Role("admin write+admin key", "admin", ("write", "admin")),
    # carol is a sub-user of alice's server holding only console.read.
    Role("sub-user key lacking nodes", "carol", ("read", "write")),
    # A scraper's key: metrics and nothing else; and one that also administers.
    Role("admin metrics-only key", "admin", ("metrics",)),
    Role("admin write+admin+metrics key", "admin", ("write", "admin", "metrics")),
]


def expected(endpoint: Endpoint, role: Role) -> Outcome:
    """What the contract says, written independently of the code under test."""
    if endpoint.access is Access.PUBLIC:
        return "allowed"  # sign-in and the like: a key neither opens nor closes them
    if endpoint.scope is not None:
        # /metrics: its own scope, kept only by administrators' keys; nothing else opens it.
        own = role.holder == "admin" and endpoint.scope.value in role.scopes
        return "allowed" if own else "forbidden"
    on_server = "{server_id}" in endpoint.path
    if on_server and role.holder == "admin" and not role.acts_as_admin:
        return "hidden"  # an admin's key without the admin scope sees only its own servers
    if endpoint.path.startswith(ACCOUNT) and endpoint.method not in SAFE:
        return "forbidden"  # account security: from a browser session only
    if (
        endpoint.path.startswith(COMPAT_ACCOUNT)
        and (endpoint.method, endpoint.path) not in COMPAT_ACCOUNT_FOR_KEYS
    ):
        return "forbidden"
    if endpoint.method in SAFE:
        if not {"read", "write"} & set(role.scopes):
            return "forbidden"
    elif "write" not in role.scopes:
        return "forbidden"
    if endpoint.access is Access.ADMIN and not role.acts_as_admin:
        return "forbidden"
    personal = any(p in endpoint.path for p in PERSONAL)
    if role.holder != "alice" and personal and not endpoint.path.startswith(USERS_OBJECTS):
        return "hidden"
    if role.holder == "carol" and on_server and endpoint.permission not in (VIEW, "console.read"):
        return "forbidden"
    return "allowed"


async def key_for(world: World, role: Role) -> Browser:
    owner = {"alice": world.alice, "admin": world.admin, "carol": world.carol}[role.holder]
    created = await owner.json(
        "POST",
        "/api/v1/account/api-keys",
        status=201,
        json={"name": role.name, "scopes": list(role.scopes)},
    )
    bot = await world.panel.browser()
    bot.api_key = created["key"]
    return bot


async def error_message(response: ClientResponse) -> str:
    """The error's message: the API's JSON, or a page's (the error page's first paragraph)."""
    if response.content_type == "application/json":
        return str(error_of(await response.json())["message"])
    if response.content_type == "text/html" and response.status >= 400:
        found = re.search(r"<h1>\d{3}</h1>\s*<p>(.*?)</p>", await response.text(), re.S)
        return html.unescape(found[1]) if found else ""
    return ""


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
async def test_every_route_answers_each_scope_set_as_the_contract_says(
    panel: Panel, role: Role
) -> None:
    world = await build_world(panel)
    bot = await key_for(world, role)
    wrong: list[str] = []
    outcomes: set[Outcome] = set()
    # Safe methods first: the unsafe ones that are let through really act on the world.
    for endpoint in sorted(endpoints(), key=lambda e: (e.method not in SAFE, e.path)):
        response = await bot.request(
            endpoint.method, concrete(endpoint, world), json={}, allow_redirects=False
        )
        message = await error_message(response)
        refused_by_authz = response.status == 403 and any(m in message for m in AUTHZ_MESSAGES)
        want = expected(endpoint, role)
        outcomes.add(want)
        label = f"{endpoint.method} {endpoint.path}: {response.status} {message!r}, want {want}"
        hidden = response.status == 404 and message == "no such server"
        right = {
            "allowed": not (refused_by_authz or hidden or response.status == 401),
            "forbidden": refused_by_authz,
            "hidden": response.status == 404,
        }[want]
        if not right or response.status in (500, 501):
            wrong.append(label)
    assert not wrong, "\n".join(wrong)
    assert "allowed" in outcomes


async def test_a_key_with_the_admin_scope_alone_cannot_be_created(panel: Panel) -> None:
    admin = await panel.signed_in("root@example.org", admin=True)
    refused = await admin.json(
        "POST", "/api/v1/account/api-keys", status=400, json={"name": "x", "scopes": ["admin"]}
    )
    assert "read" in refused["error"]["message"] or "read" in str(refused["error"]["details"])


async def test_an_admins_key_without_the_admin_scope_lists_only_its_own_servers(
    panel: Panel,
) -> None:
    world = await build_world(panel)
    bot = await key_for(world, Role("k", "admin", ("read", "write")))
    listed = await bot.json("GET", "/api/v1/servers")
    assert listed["data"] == []
    assert listed["meta"]["total"] == 0
    full = await key_for(world, Role("k2", "admin", ("read", "admin")))
    listed = await full.json("GET", "/api/v1/servers")
    assert listed["meta"]["total"] == 2
