"""Webhook rules that need no server: the retry schedule, which events a webhook gets, the
signature format, Discord bodies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from control_plane.services.webhooks.catalogue import delivery_type, discord_message
from control_plane.services.webhooks.retries import MAX_RETRY_DELAY, RetryPolicy
from control_plane.services.webhooks.signing import new_secret, sign


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
def test_retries_double_stay_capped_and_keep_the_jitter_in_its_band(jitter: float) -> None:
    policy = RetryPolicy(30.0, 86400.0, lambda: jitter)
    delays = [policy.delay(attempt, None) for attempt in range(1, 20)]
    for attempt, delay in enumerate(delays, start=1):
        full = min(30.0 * 2 ** (attempt - 1), MAX_RETRY_DELAY)
        assert full * 0.5 <= delay < full
    # About a day of retries takes about 15 attempts with the defaults.
    total, attempts = 0.0, 0
    while total < 86400:
        attempts += 1
        total += policy.delay(attempts, None)
    assert 12 <= attempts <= 24


def test_a_retry_after_longer_than_the_backoff_is_respected_up_to_an_hour() -> None:
    policy = RetryPolicy(1.0, 86400.0, lambda: 0.0)
    assert policy.delay(1, 120.0) == 120.0
    assert policy.delay(1, 10 * 86400.0) == 3600.0
    assert policy.delay(1, 0.1) == 0.5


@pytest.mark.parametrize(
    ("action", "subscribed", "expected"),
    [
        ("server.power.kill", ["server.power", "audit"], "server.power"),
        ("server.power.kill", ["audit"], "audit"),
        ("server.power.kill", ["server.state"], None),
        ("server.state", ["audit"], None),  # state changes are not audited
        ("user.login.succeeded", ["user.signed_in"], "user.signed_in"),
        ("user.login.failed", ["user.signed_in"], None),
        ("server.backup.failed", ["server.backup.completed"], None),
    ],
)
def test_an_event_makes_at_most_one_delivery_of_the_most_specific_type(
    action: str, subscribed: list[str], expected: str | None
) -> None:
    assert delivery_type(action, subscribed) == expected


def test_signatures_follow_the_standard_webhooks_format() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) == 32
    signature = sign(secret, "msg_1", 1700000000, b'{"a":1}')
    key = base64.b64decode(secret[6:])
    mac = hmac.new(key, b'msg_1.1700000000.{"a":1}', hashlib.sha256).digest()
    assert signature == "v1," + base64.b64encode(mac).decode()


def test_discord_messages_ping_nobody_and_fit_discords_limits() -> None:
    payload = {
        "type": "server.crashed",
        "timestamp": "2026-12-05T12:00:00+00:00",
        "data": {
            "action": "server.crashed",
            "server": {"id": "x", "name": "@everyone " + "x" * 5000},
            "details": {"exit_code": 1},
        },
    }
    message = discord_message(payload)
    assert message["allowed_mentions"] == {"parse": []}
    (embed,) = message["embeds"]
    assert embed["color"] == 0xE74C3C
    assert all(len(f["value"]) <= 1024 for f in embed["fields"])
    json.dumps(message)
