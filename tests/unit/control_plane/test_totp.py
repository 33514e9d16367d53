"""TOTP verification against RFC 6238's vectors and oathtool; recovery codes; enrolment."""

from __future__ import annotations

import base64
import subprocess
import time
import urllib.parse

import pytest

from control_plane.security import totp
from tests.conftest import require_tool

# RFC 6238 Appendix B, SHA-1 rows: the seed is the ASCII string "12345678901234567890".
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


def oathtool(secret: str, unix_time: float) -> str:
    require_tool("oathtool", "oathtool")
    done = subprocess.run(
        ["oathtool", "--totp", "-b", secret, f"--now=@{int(unix_time)}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.parametrize(("unix_time", "expected"), RFC_VECTORS)
def test_rfc_6238_sha1_vectors_verify(unix_time: int, expected: str) -> None:
    step = totp.step_at(unix_time)
    assert totp.code_at_step(RFC_SECRET, step, digits=8) == expected
    assert (
        totp.matching_step(RFC_SECRET, expected, unix_time=unix_time, last_step=None, digits=8)
        == step
    )
    # Six digits are the last six of the eight (the code is the truncated value mod 10^d).
    assert (
        totp.matching_step(RFC_SECRET, expected[-6:], unix_time=unix_time, last_step=None) == step
    )


def test_codes_from_oathtool_are_accepted() -> None:
    secret = totp.generate_secret()
    now = time.time()
    assert totp.matching_step(secret, oathtool(secret, now), unix_time=now, last_step=None) == (
        totp.step_at(now)
    )


def test_one_step_of_drift_either_way_is_accepted_two_are_not() -> None:
    secret = totp.generate_secret()
    now = 1_700_000_015.0
    for offset, accepted in ((-60, False), (-30, True), (0, True), (30, True), (60, False)):
        code = oathtool(secret, now + offset)
        found = totp.matching_step(secret, code, unix_time=now, last_step=None)
        assert (found is not None) is accepted, offset


def test_a_step_at_or_before_the_last_accepted_one_is_refused() -> None:
    secret = totp.generate_secret()
    now = 1_700_000_015.0
    step = totp.step_at(now)
    code = totp.code_at_step(secret, step)
    assert totp.matching_step(secret, code, unix_time=now, last_step=step - 1) == step
    assert totp.matching_step(secret, code, unix_time=now, last_step=step) is None
    earlier = totp.code_at_step(secret, step - 1)
    assert totp.matching_step(secret, earlier, unix_time=now, last_step=step) is None


@pytest.mark.parametrize(
    "code", ["", "12345", "1234567", "abcdef", "12 34 5x", "\uff11\uff12\uff13\uff14\uff15\uff16"]
)
def test_malformed_codes_are_refused(code: str) -> None:
    assert totp.matching_step(RFC_SECRET, code, unix_time=59, last_step=None) is None


def test_secrets_are_160_random_bits_in_base32() -> None:
    secrets = {totp.generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(len(base64.b32decode(s)) == 20 for s in secrets)


def test_enrolment_gives_an_otpauth_uri_and_an_svg_qr_code() -> None:
    secret = totp.generate_secret()
    enrolment = totp.enrolment(secret, account="alice@example.org", issuer="StellarStack")
    uri = urllib.parse.urlparse(enrolment.uri)
    query = urllib.parse.parse_qs(uri.query)
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert query["secret"] == [secret]
    assert query["issuer"] == ["StellarStack"]
    assert enrolment.qr_svg_data_uri.startswith("data:image/svg+xml")


def test_recovery_codes_are_distinct_high_entropy_and_typed_back_loosely() -> None:
    codes = totp.generate_recovery_codes()
    assert len(codes) == 10
    assert len(set(codes)) == 10
    for code in codes:
        assert len(totp.normalise_recovery_code(code)) == 16
        assert totp.recovery_code_hash(code.upper().replace("-", " ")) == (
            totp.recovery_code_hash(code)
        )
    assert totp.recovery_code_hash(codes[0]) != totp.recovery_code_hash(codes[1])
