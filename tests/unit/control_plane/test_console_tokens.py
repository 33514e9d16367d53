"""Console tokens are only ever what the control plane issued, for one use, until they end;
and the Wings dialect frames our node's events as Wings clients read them."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest

from control_plane.api.console_dialect import WingsDialect, frame
from control_plane.security import console_tokens
from control_plane.security.api_keys import Scope
from control_plane.security.caller import Caller
from control_plane.security.console_tokens import ConsoleTokenRefused

SECRET = "s" * 40
SERVER = uuid.uuid4()


def caller(via: str = "api_key") -> Caller:
    return Caller(
        uuid.uuid4(),
        "bot@example.org",
        False,
        "api_key" if via == "api_key" else "session",
        frozenset({Scope.READ}),
        "127.0.0.1",
        "test",
        session_id=uuid.uuid4() if via == "session" else None,
        api_key_id=uuid.uuid4() if via == "api_key" else None,
    )


def test_a_token_carries_its_server_user_credential_and_scopes() -> None:
    bot = caller()
    token, expires = console_tokens.issue(SECRET, bot, SERVER, lifetime=60)
    grant = console_tokens.verify(SECRET, token)
    assert (grant.user_id, grant.server_id, grant.via) == (bot.user_id, SERVER, "api_key")
    assert grant.credential_id == bot.api_key_id
    assert grant.scopes == {Scope.READ}
    assert grant.expires_at == expires
    assert time.time() + 55 < expires <= time.time() + 61


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"exp": 1}, "expired"),
        ({"aud": "stellarstack:files"}, "invalid"),
        ({"iss": "somebody"}, "invalid"),
        ({"scp": ["root"]}, "invalid"),
        ({"via": "cookie"}, "invalid"),
        ({"srv": "not-a-uuid"}, "invalid"),
    ],
)
def test_a_changed_claim_is_refused_even_when_signed_right(
    change: dict[str, object], reason: str
) -> None:
    token, _ = console_tokens.issue(SECRET, caller(), SERVER)
    claims = jwt.decode(token, options={"verify_signature": False})
    resigned = jwt.encode({**claims, **change}, console_tokens._key(SECRET), algorithm="HS256")
    with pytest.raises(ConsoleTokenRefused) as refused:
        console_tokens.verify(SECRET, resigned)
    assert refused.value.reason == reason


def test_missing_claims_other_keys_other_algorithms_and_junk_are_refused() -> None:
    token, _ = console_tokens.issue(SECRET, caller("session"), SERVER)
    claims = jwt.decode(token, options={"verify_signature": False})
    key = console_tokens._key(SECRET)
    attempts = [
        jwt.encode({k: v for k, v in claims.items() if k != "cred"}, key, algorithm="HS256"),
        jwt.encode(claims, b"k" * 32, algorithm="HS256"),
        jwt.encode(claims, key * 2, algorithm="HS512"),
        jwt.encode(claims, None, algorithm="none"),  # type: ignore[arg-type]
        # A session token, CSRF token or anything signed with the auth secret itself.
        jwt.encode(claims, SECRET, algorithm="HS256"),
        token[:-4] + "AAAA",
        "x" * 10,
        "x" * 5000,
    ]
    for attempt in attempts:
        with pytest.raises(ConsoleTokenRefused) as refused:
            console_tokens.verify(SECRET, attempt)
        assert refused.value.reason == "invalid", attempt[:40]
    with pytest.raises(ConsoleTokenRefused):
        console_tokens.verify("another secret entirely, rotated", token)


def test_the_clock_can_be_given() -> None:
    token, expires = console_tokens.issue(SECRET, caller(), SERVER, lifetime=30, now=1000.0)
    assert expires == 1030.0
    assert console_tokens.verify(SECRET, token, now=1029.0).expires_at == 1030.0
    with pytest.raises(ConsoleTokenRefused, match="expired"):
        console_tokens.verify(SECRET, token, now=1030.0)


def test_the_dialect_frames_stats_states_errors_and_throttling_as_wings() -> None:
    dialect = WingsDialect()
    stats = {
        "state": "running", "cpu_percent": 12.3456, "memory_bytes": 10, "memory_limit_bytes": 20,
        "network_rx_bytes": 3, "network_tx_bytes": 4, "pids": 2, "uptime_seconds": 1.5,
        "sampled_at": 0.0,
    }  # fmt: skip
    [out] = dialect.translate(frame("stats", stats))
    sent = json.loads(out)
    assert sent["event"] == "stats"
    assert json.loads(sent["args"][0]) == {
        "memory_bytes": 10, "memory_limit_bytes": 20, "cpu_absolute": 12.346,
        "network": {"rx_bytes": 3, "tx_bytes": 4}, "uptime": 1500, "state": "running",
        "disk_bytes": 0,
    }  # fmt: skip
    assert dialect.translate(frame("status", "crashed")) == [frame("status", "offline")]
    assert dialect.translate(frame("status", "installing")) == [
        frame("install started"),
        frame("status", "offline"),
    ]
    assert dialect.translate(frame("status", "offline")) == [
        frame("install completed"),
        frame("status", "offline"),
    ]
    assert dialect.translate(frame("error", "no")) == [frame("daemon error", "no")]
    notice = frame("console output", "[stellar] output throttled: 12 lines dropped")
    assert dialect.translate(notice) == [notice, frame("throttled", "console")]
    line = frame("console output", "<b>hi</b>")
    assert dialect.translate(line) == [line]
    dialect.gated = True
    assert dialect.translate(line) == []
    assert dialect.translate("not json") == []


def test_a_recorded_state_reaches_a_wings_client_once_as_its_status() -> None:
    dialect = WingsDialect()
    assert dialect.recorded_state("running") == [frame("status", "running")]
    # The node said it too (or the other way round): the client hears it once.
    assert dialect.translate(frame("status", "running")) == [frame("status", "running")]
    assert dialect.recorded_state("running") == []
    # install_failed and crashed are "offline" to Wings; said once.
    assert dialect.recorded_state("install_failed") == [frame("status", "offline")]
    assert dialect.recorded_state("crashed") == []
    assert dialect.recorded_state("installing") == [
        frame("install started"),
        frame("status", "offline"),
    ]
    dialect.gated = True
    assert dialect.recorded_state("running") == []
