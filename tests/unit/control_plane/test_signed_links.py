"""Signed links' tokens: what verifies, and every way one is refused."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from control_plane.security import signed_links
from control_plane.security.api_keys import Scope
from control_plane.security.caller import Caller
from control_plane.security.console_tokens import issue as console_issue

SECRET = "s" * 48
SERVER = uuid.uuid4()
CALLER = Caller(
    user_id=uuid.uuid4(),
    email="a@example.org",
    is_admin=False,
    via="api_key",
    scopes=frozenset({Scope.READ, Scope.WRITE}),
    ip="127.0.0.1",
    user_agent="",
    api_key_id=uuid.uuid4(),
)


def test_a_link_names_its_action_server_target_and_credential() -> None:
    token, expires = signed_links.issue(SECRET, CALLER, SERVER, "file.download", "/a/b.txt")
    link = signed_links.verify(SECRET, token, "file.download")
    assert (link.server_id, link.target, link.action) == (SERVER, "/a/b.txt", "file.download")
    assert link.grant.credential_id == CALLER.api_key_id
    assert link.grant.scopes == CALLER.scopes
    assert link.grant.expires_at == expires
    assert expires - time.time() <= signed_links.LIFETIME_SECONDS
    other, _ = signed_links.issue(SECRET, CALLER, SERVER, "file.download", "/a/b.txt")
    assert signed_links.verify(SECRET, other, "file.download").jti != link.jti


def test_every_other_token_is_refused() -> None:
    token, _ = signed_links.issue(SECRET, CALLER, SERVER, "file.download", "/a")
    old, _ = signed_links.issue(
        SECRET, CALLER, SERVER, "file.download", "/a", now=time.time() - 301
    )
    console, _ = console_issue(SECRET, CALLER, SERVER)
    claims = jwt.decode(token, options={"verify_signature": False})
    none_alg = jwt.encode({**claims, "tgt": "/etc"}, key="", algorithm="none")
    refused: list[tuple[object, signed_links.Action]] = [
        (token, "backup.download"),
        (token, "file.upload"),
        (old, "file.download"),
        (console, "file.download"),
        (none_alg, "file.download"),
        (token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "file.download"),
        ("x" * 20, "file.download"),
        (None, "file.download"),
    ]
    for candidate, action in refused:
        with pytest.raises(signed_links.LinkRefused):
            signed_links.verify(SECRET, candidate, action)
    with pytest.raises(signed_links.LinkRefused):
        signed_links.verify("another secret of enough length", token, "file.download")
