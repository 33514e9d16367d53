"""SecretBox: AES-256-GCM values bound to their place, with key rotation and one error type."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from control_plane.security.encryption import (
    ENCRYPTED_COLUMNS,
    EncryptionNotConfigured,
    SecretBox,
    SecretDecryptionError,
)
from control_plane.settings import ConfigError, load_settings, parse_encryption_keys

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 32 bytes, like a TOTP secret
ROW = str(uuid.uuid4())
PLACE = {"table": "totp_credentials", "column": "secret", "row_id": ROW}


def new_key() -> bytes:
    return secrets.token_bytes(32)


OLD, NEW = new_key(), new_key()


def decoded_blob(token: str) -> bytes:
    body = token.split(":")[2]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def with_blob(token: str, blob: bytes) -> str:
    prefix = token.rsplit(":", 1)[0]
    return f"{prefix}:{base64.urlsafe_b64encode(blob).rstrip(b'=').decode()}"


@pytest.fixture
def box() -> SecretBox:
    return SecretBox({"k1": OLD})


@pytest.fixture
def token(box: SecretBox) -> str:
    return box.encrypt(SECRET, **PLACE)


def test_round_trip_and_format(box: SecretBox, token: str) -> None:
    version, kid, body = token.split(":")
    assert (version, kid) == ("v1", "k1")
    assert "=" not in body
    assert len(decoded_blob(token)) == 12 + len(SECRET) + 16
    assert box.decrypt(token, **PLACE) == SECRET
    assert SECRET not in token


def test_unicode_and_empty_plaintexts_round_trip(box: SecretBox) -> None:
    for plaintext in ("", "päss wörd ✓", "x" * 10_000):
        assert box.decrypt(box.encrypt(plaintext, **PLACE), **PLACE) == plaintext


def test_every_flipped_byte_of_the_blob_is_rejected(box: SecretBox, token: str) -> None:
    blob = decoded_blob(token)
    for position in range(len(blob)):
        for mask in (0x01, 0x80):
            tampered = bytearray(blob)
            tampered[position] ^= mask
            with pytest.raises(SecretDecryptionError):
                box.decrypt(with_blob(token, bytes(tampered)), **PLACE)


def test_every_changed_character_of_the_text_is_rejected(box: SecretBox, token: str) -> None:
    for position, char in enumerate(token):
        for replacement in {"A", "B", "-", ":", "v", "2", "_", " "} - {char}:
            tampered = token[:position] + replacement + token[position + 1 :]
            with pytest.raises(SecretDecryptionError):
                box.decrypt(tampered, **PLACE)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t.replace("v1:", "v2:", 1),
        lambda t: t.replace("v1:", "", 1),
        lambda t: t.replace(":k1:", ":k2:", 1),
        lambda t: t.replace(":k1:", "::", 1),
        lambda t: t + ":",
        lambda t: t + "A",
        lambda t: t + "==",
        lambda t: t[:-1],
        lambda t: t[:20],
        lambda t: "v1:k1:",
        lambda t: "v1:k1:" + base64.urlsafe_b64encode(b"\0" * 27).decode(),
        lambda t: "",
        lambda t: "not a token",
        lambda t: t.upper(),
        lambda t: t.encode(),
        lambda t: None,
    ],
    ids=[
        "version", "no-version", "other-kid", "empty-kid", "extra-part", "longer", "padding",
        "shorter", "truncated", "empty-body", "short-blob", "empty", "garbage", "case",
        "bytes", "none",
    ],
)  # fmt: skip
def test_malformed_tokens_raise_the_one_error(
    box: SecretBox, token: str, tamper: Callable[[str], object]
) -> None:
    with pytest.raises(SecretDecryptionError) as caught:
        box.decrypt(tamper(token), **PLACE)  # type: ignore[arg-type]
    assert type(caught.value) is SecretDecryptionError
    assert SECRET not in str(caught.value)
    assert token.split(":")[2] not in str(caught.value)


@pytest.mark.parametrize(
    "other",
    [
        {"row_id": str(uuid.uuid4())},
        {"column": "recovery_codes"},
        {"table": "webhooks"},
        {"table": "totp_credentials|secret", "column": ""},  # no ambiguity in the binding
    ],
    ids=["other-row", "other-column", "other-table", "shifted-separator"],
)
def test_a_value_moved_to_another_place_is_rejected(
    box: SecretBox, token: str, other: dict[str, str]
) -> None:
    with pytest.raises(SecretDecryptionError, match="moved from another row or column"):
        box.decrypt(token, **(PLACE | other))


def test_uuid_and_its_text_are_the_same_row(box: SecretBox) -> None:
    row = uuid.uuid4()
    token = box.encrypt(SECRET, table="t", column="c", row_id=row)
    assert box.decrypt(token, table="t", column="c", row_id=str(row)) == SECRET


def test_the_newest_key_encrypts_and_an_older_one_still_decrypts(token: str) -> None:
    rotated = SecretBox({"k2": NEW, "k1": OLD})
    assert rotated.decrypt(token, **PLACE) == SECRET
    assert rotated.needs_reencryption(token)
    fresh = rotated.encrypt(SECRET, **PLACE)
    assert fresh.startswith("v1:k2:")
    assert not rotated.needs_reencryption(fresh)
    assert rotated.decrypt(fresh, **PLACE) == SECRET


def test_a_removed_key_is_named_in_the_error(token: str) -> None:
    without_old = SecretBox({"k2": NEW})
    with pytest.raises(SecretDecryptionError, match="'k1', not configured"):
        without_old.decrypt(token, **PLACE)


def test_a_kid_relabelled_to_another_configured_key_is_rejected(token: str) -> None:
    # Same key material under two ids: the kid is authenticated, not just a lookup hint.
    aliased = SecretBox({"k1": OLD, "k9": OLD})
    with pytest.raises(SecretDecryptionError):
        aliased.decrypt(token.replace(":k1:", ":k9:"), **PLACE)


def test_needs_reencryption_refuses_malformed_tokens(box: SecretBox) -> None:
    with pytest.raises(SecretDecryptionError):
        box.needs_reencryption("plaintext-that-was-never-encrypted")


def test_nonces_never_repeat_in_100000_encryptions(box: SecretBox) -> None:
    nonces = {decoded_blob(box.encrypt("s", **PLACE))[:12] for _ in range(100_000)}
    assert len(nonces) == 100_000


def test_without_keys_use_fails_clearly_but_construction_does_not() -> None:
    box = SecretBox({})
    assert not box.is_configured
    for use in (
        lambda: box.encrypt(SECRET, **PLACE),
        lambda: box.decrypt("v1:k1:AAAA", **PLACE),
        lambda: box.needs_reencryption("v1:k1:AAAA"),
    ):
        with pytest.raises(EncryptionNotConfigured, match="stellar-cp keys encryption"):
            use()


def test_encrypting_without_a_place_is_refused(box: SecretBox) -> None:
    for missing in ("table", "column", "row_id"):
        with pytest.raises(ValueError, match="needed to bind"):
            box.encrypt(SECRET, **(PLACE | {missing: ""}))


@pytest.mark.parametrize(
    ("keys", "message"),
    [({"k1": b"short"}, "32 bytes"), ({"k:1": bytes(range(32))}, "key id")],
)
def test_bad_keys_are_refused_at_construction(keys: dict[str, bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SecretBox(keys)


def settings_with(keys: str) -> SecretBox:
    return SecretBox.from_settings(
        load_settings(
            {
                "STELLAR_DATABASE_URL": "sqlite:///unused.db",
                "STELLAR_AUTH_SECRET": "k3Jd9QmX2vLp7RtN4wYb8ZcF6hGs1aEu0iOy5TnM",
                "STELLAR_ENCRYPTION_KEYS": keys,
            }
        )
    )


def test_the_guides_bare_64_hex_key_is_accepted() -> None:
    box = settings_with(secrets.token_hex(32))
    token = box.encrypt(SECRET, **PLACE)
    assert token.startswith(f"v1:{box.current_kid}:")
    assert box.decrypt(token, **PLACE) == SECRET


def test_settings_keys_keep_their_order_and_ids() -> None:
    new_hex, old_hex = secrets.token_hex(32), secrets.token_hex(32)
    old_box = settings_with(f"k1:{old_hex}")
    token = old_box.encrypt(SECRET, **PLACE)
    rotated = settings_with(f"k2:{new_hex}, k1:{old_hex}")
    assert rotated.current_kid == "k2"
    assert rotated.decrypt(token, **PLACE) == SECRET


@pytest.mark.parametrize("length", [62, 63, 65, 66, 128])
def test_a_wrong_length_key_is_refused_by_settings(length: int) -> None:
    material = secrets.token_hex(64)[:length]
    with pytest.raises(ConfigError, match="64 hex characters"):
        settings_with(f"k1:{material}")
    with pytest.raises(ValueError, match="64 hex characters"):
        parse_encryption_keys(material)


def test_no_settings_keys_gives_an_unconfigured_box() -> None:
    settings = load_settings(
        {
            "STELLAR_DATABASE_URL": "sqlite:///unused.db",
            "STELLAR_AUTH_SECRET": "k3Jd9QmX2vLp7RtN4wYb8ZcF6hGs1aEu0iOy5TnM",
        }
    )
    assert not SecretBox.from_settings(settings).is_configured


class _Base(DeclarativeBase):
    pass


class _Webhook(_Base):
    __tablename__ = "unit_webhooks"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    secret: Mapped[str | None] = mapped_column(String(200), default=None)
    url: Mapped[str] = mapped_column(String(200), default="")


@pytest.fixture
def registered() -> Iterator[None]:
    ENCRYPTED_COLUMNS.append((_Webhook, "secret"))
    yield
    ENCRYPTED_COLUMNS.remove((_Webhook, "secret"))


@pytest.mark.usefixtures("registered")
def test_seal_assigns_the_row_id_and_binds_to_it(box: SecretBox) -> None:
    hook = _Webhook()
    assert hook.id is None
    box.seal(hook, "secret", SECRET)
    assert isinstance(hook.id, uuid.UUID)
    assert hook.secret is not None
    assert hook.secret.startswith("v1:k1:")
    assert box.unseal(hook, "secret") == SECRET
    place = {"table": "unit_webhooks", "column": "secret", "row_id": str(hook.id)}
    assert box.decrypt(hook.secret, **place) == SECRET

    other = _Webhook(id=uuid.uuid4(), secret=hook.secret)
    with pytest.raises(SecretDecryptionError):
        box.unseal(other, "secret")


@pytest.mark.usefixtures("registered")
def test_seal_keeps_an_existing_row_id_and_unseal_passes_none(box: SecretBox) -> None:
    row_id = uuid.uuid4()
    hook = _Webhook(id=row_id)
    assert box.unseal(hook, "secret") is None
    box.seal(hook, "secret", SECRET)
    assert hook.id == row_id


def test_unregistered_columns_cannot_be_sealed(box: SecretBox) -> None:
    with pytest.raises(LookupError, match="ENCRYPTED_COLUMNS"):
        box.seal(_Webhook(), "url", SECRET)
    with pytest.raises(LookupError, match="ENCRYPTED_COLUMNS"):
        box.unseal(_Webhook(), "url")
