"""Device cookies (control_plane/security/devices.py): what a cookie value is read as."""

from __future__ import annotations

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
