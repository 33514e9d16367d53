"""SFTP password hashes: salted scrypt, checked in constant time, odd input refused."""

from __future__ import annotations

import pytest

from shared.sftp_passwords import check_hash_format, hash_password, new_password, verify_password


def test_a_password_matches_its_hash_only() -> None:
    password = new_password()
    hashed = hash_password(password)
    assert hashed.startswith("scrypt$16384$8$1$")
    assert verify_password(password, hashed)
    assert not verify_password(password + "x", hashed)
    assert hash_password(password) != hashed  # salted


@pytest.mark.parametrize(
    "bad", ["", "bcrypt$x", "scrypt$3$8$1$AAAAAAAAAAA=$AAAA", "scrypt$1048576$8$1$AAAAAAAAAAA=$A"]
)
def test_a_hash_of_another_form_is_refused_and_never_matches(bad: str) -> None:
    with pytest.raises(ValueError, match="scrypt"):
        check_hash_format(bad)
    assert not verify_password("anything", bad)
