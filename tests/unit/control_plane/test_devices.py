"""Device cookies (control_plane/security/devices.py): what a cookie value is read as."""

from __future__ import annotations

import datetime as dt
import time

import jwt

from control_plane.security import devices

SECRET = "a secret of the panel, long enough for HS256 x"


def test_a_browser_is_recognised_for_each_account_it_signed_in_as_most_recent_first() -> None:
    first = devices.recognised(SECRET, None, "user-a")
    second = devices.recognised(SECRET, first, "user-b")
    again = devices.recognised(SECRET, second, "user-a")
    device = devices.read(SECRET, again)
    assert device is not None
    assert device.accounts == ("user-a", "user-b")
    assert device.id == devices.read(SECRET, first).id  # type: ignore[union-attr]
    assert device.knows("user-b")
    assert not device.knows("user-c")


def test_a_browser_is_a_stranger_to_an_account_whose_sessions_were_ended_since() -> None:
    """Each account carries when the browser signed in as it; an account whose sessions were
    all ended after that (a password change) no longer knows the browser."""
    start = int(time.time()) - 3_000
    first = devices.recognised(SECRET, None, "user-a", now=start + 1_000)
    both = devices.recognised(SECRET, first, "user-b", now=start + 2_000)
    device = devices.read(SECRET, both)
    assert device is not None
    assert device.signed_in_ms == ((start + 2_000) * 1000, (start + 1_000) * 1000)
    ended = dt.datetime.fromtimestamp(start + 1_500, dt.UTC)
    assert device.knows("user-a")
    assert not device.knows("user-a", since=ended)
    assert device.knows("user-b", since=ended)
    assert device.knows("user-b", since=dt.datetime.fromtimestamp(start + 2_000, dt.UTC))
    again = devices.read(SECRET, devices.recognised(SECRET, both, "user-a", now=start + 3_000))
    assert again is not None
    assert again.knows("user-a", since=ended)


def test_a_cookie_from_before_the_times_were_kept_counts_from_its_issue() -> None:
    issued = int(time.time()) - 100
    claims = jwt.decode(
        devices.issue(SECRET, ["user-a"], now=issued), options={"verify_signature": False}
    )
    old = jwt.encode({**claims, "acc": ["user-a"]}, devices._key(SECRET))
    device = devices.read(SECRET, old)
    assert device is not None
    assert device.signed_in_ms == (issued * 1000,)
    forged = jwt.encode({**claims, "acc": ["user-a/soon"]}, devices._key(SECRET))
    assert devices.read(SECRET, forged) is None


def test_at_most_eight_accounts_are_kept() -> None:
    token = None
    for n in range(12):
        token = devices.recognised(SECRET, token, f"user-{n}")
    device = devices.read(SECRET, token)
    assert device is not None
    assert device.accounts == tuple(f"user-{n}" for n in range(11, 3, -1))


def test_forged_expired_foreign_or_malformed_values_name_no_browser() -> None:
    now = time.time()
    genuine = devices.issue(SECRET, ["user-a"])
    claims = jwt.decode(genuine, options={"verify_signature": False})
    key = devices._key(SECRET)
    values = {
        "another secret": devices.issue(SECRET + "!", ["user-a"]),
        "expired": devices.issue(SECRET, ["user-a"], now=now - devices.LIFETIME_SECONDS - 60),
        "another audience": jwt.encode({**claims, "aud": "stellarstack:signed-link"}, key),
        "no algorithm": jwt.encode(claims, "", algorithm="none"),
        "accounts not a list": jwt.encode({**claims, "acc": "user-a"}, key),
        "short id": jwt.encode({**claims, "jti": "x"}, key),
        "not a token": "x" * 40,
        "not text": 12345,
    }
    for what, value in values.items():
        assert devices.read(SECRET, value) is None, what
    assert devices.read(SECRET, genuine) is not None


def test_an_addresses_allowance_is_the_same_however_it_is_typed_and_names_no_address() -> None:
    for has_account in (True, False):
        subject = devices.account_subject(" Victim@Example.org ", has_account=has_account)
        assert subject == devices.account_subject("victim@example.org", has_account=has_account)
        assert "example" not in subject


def test_addresses_without_an_account_share_a_bounded_number_of_allowances() -> None:
    invented = {
        devices.account_subject(f"x{n}@example.org", has_account=False) for n in range(20_000)
    }
    assert 4000 < len(invented) <= devices.UNKNOWN_SLOTS
    owned = {devices.account_subject(f"x{n}@example.org", has_account=True) for n in range(100)}
    assert len(owned) == 100
