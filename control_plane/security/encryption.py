"""Secrets at rest: AES-256-GCM, bound to the table, column and row that hold the value.

A stored value reads ``v1:<kid>:<base64url(nonce ‖ ciphertext ‖ tag)>`` (unpadded base64url,
96-bit random nonce, 128-bit tag). The associated data names the format version, the key id,
the table, the column and the row id, so a value copied to another row or column, or relabelled
with another key id, fails to decrypt. Several keys may be configured: the first encrypts, all
decrypt; ``stellar-cp secrets reencrypt`` moves every stored value to the first key.

    EncryptionError               (root; never carries secret material)
    ├── EncryptionNotConfigured   no STELLAR_ENCRYPTION_KEYS (allowed in development)
    └── SecretDecryptionError     every way a stored value can be unreadable

Models with an encrypted column register it in :data:`ENCRYPTED_COLUMNS`, right after the class::

    ENCRYPTED_COLUMNS.append((TotpCredential, "secret"))

and write and read it with :meth:`SecretBox.seal` and :meth:`SecretBox.unseal`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.orm import DeclarativeBase

if TYPE_CHECKING:
    from control_plane.settings import ControlPlaneSettings

VERSION = "v1"
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
_KID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")

ENCRYPTED_COLUMNS: list[tuple[type[DeclarativeBase], str]] = []
"""Every (model, attribute) holding a :class:`SecretBox` value; re-encryption walks this list."""


class EncryptionError(Exception):
    """Root of the errors of this module; messages never contain keys, plaintexts or tokens."""


class EncryptionNotConfigured(EncryptionError):
    """No encryption key is configured, so secrets can be neither stored nor read."""


class SecretDecryptionError(EncryptionError):
    """A stored value cannot be decrypted: malformed, unknown key id, tampered or misplaced."""


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _BASE64URL.fullmatch(text):
        raise SecretDecryptionError("secret is not valid base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as err:
        raise SecretDecryptionError("secret is not valid base64url") from err
    # Unused low bits of the last character would otherwise give one blob several spellings.
    if _b64encode(raw) != text:
        raise SecretDecryptionError("secret is not canonical base64url")
    return raw


def _associated_data(kid: str, table: str, column: str, row_id: str) -> bytes:
    # Length-prefixed, so no choice of names can make two different places encode alike.
    parts = (f"stellar/{VERSION}", kid, table, column, row_id)
    encoded = (part.encode() for part in parts)
    return b"".join(len(part).to_bytes(4, "big") + part for part in encoded)


def _split(token: str) -> tuple[str, str]:
    """(kid, base64 body) of a well-formed token, else :class:`SecretDecryptionError`."""
    parts = token.split(":") if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != VERSION or not _KID.fullmatch(parts[1]) or not parts[2]:
        raise SecretDecryptionError(f"secret is not in the {VERSION}:<kid>:<data> format")
    return parts[1], parts[2]


class SecretBox:
    """Encrypts and decrypts column values with the configured keys; the first one encrypts.

    At most 2**32 values should be encrypted under one key (random 96-bit nonces); rotate
    keys long before that.
    """

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        """``keys`` maps key id to 32 raw bytes, newest first; empty means not configured."""
        for kid, material in keys.items():
            if not _KID.fullmatch(kid):
                raise ValueError(f"encryption key id {kid!r} must be 1-32 of A-Z a-z 0-9 _ -")
            if len(material) != KEY_BYTES:
                raise ValueError(f"encryption key {kid!r} must be {KEY_BYTES} bytes")
        self._ciphers = {kid: AESGCM(material) for kid, material in keys.items()}
        self._current = next(iter(keys), None)

    @classmethod
    def from_settings(cls, settings: ControlPlaneSettings) -> SecretBox:
        """The box for ``STELLAR_ENCRYPTION_KEYS`` (validated when the settings were loaded)."""
        return cls(settings.encryption_key_map)

    @property
    def is_configured(self) -> bool:
        return self._current is not None

    @property
    def current_kid(self) -> str:
        """The id of the key new values are encrypted with."""
        return self._require_keys()

    def _require_keys(self) -> str:
        if self._current is None:
            raise EncryptionNotConfigured(
                "STELLAR_ENCRYPTION_KEYS is not set: generate a key with "
                "`stellar-cp keys encryption`"
            )
        return self._current

    def encrypt(self, plaintext: str, *, table: str, column: str, row_id: str | uuid.UUID) -> str:
        """Encrypt ``plaintext`` for one place (table, column, row) under the newest key."""
        row = str(row_id)
        if not (table and column and row):
            raise ValueError("table, column and row id are all needed to bind a secret")
        kid = self.current_kid
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[kid].encrypt(
            nonce, plaintext.encode(), _associated_data(kid, table, column, row)
        )
        return f"{VERSION}:{kid}:{_b64encode(nonce + sealed)}"

    def decrypt(self, token: str, *, table: str, column: str, row_id: str | uuid.UUID) -> str:
        """The plaintext of ``token`` read from (table, column, row); else SecretDecryptionError."""
        self._require_keys()
        kid, body = _split(token)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise SecretDecryptionError(f"secret was encrypted with key {kid!r}, not configured")
        blob = _b64decode(body)
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise SecretDecryptionError("secret is too short")
        aad = _associated_data(kid, table, column, str(row_id))
        try:
            plaintext = cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
            return plaintext.decode()
        except (InvalidTag, UnicodeDecodeError) as err:
            raise SecretDecryptionError(
                "secret failed authentication: altered, or moved from another row or column"
            ) from err

    def needs_reencryption(self, token: str) -> bool:
        """Whether ``token`` is under a key other than the newest (checks format, not tag)."""
        kid, _body = _split(token)
        return kid != self.current_kid

    def seal(self, instance: DeclarativeBase, attr: str, plaintext: str) -> None:
        """Encrypt ``plaintext`` into ``instance.<attr>``, assigning the row id first if unset."""
        _require_registered(instance, attr)
        row_id = getattr(instance, "id", None)
        if row_id is None:
            # The id is part of the associated data, so it must exist before the first flush.
            row_id = uuid.uuid4()
            setattr(instance, "id", row_id)  # noqa: B010 -- `id` is declared by each model
        token = self.encrypt(plaintext, table=instance.__tablename__, column=attr, row_id=row_id)
        setattr(instance, attr, token)

    def unseal(self, instance: DeclarativeBase, attr: str) -> str | None:
        """The plaintext of ``instance.<attr>`` (``None`` if the column is empty)."""
        _require_registered(instance, attr)
        token: str | None = getattr(instance, attr)
        if token is None:
            return None
        row_id = getattr(instance, "id", None)
        if row_id is None:
            raise SecretDecryptionError("secret belongs to a row without an id")
        return self.decrypt(token, table=instance.__tablename__, column=attr, row_id=row_id)


def _require_registered(instance: DeclarativeBase, attr: str) -> None:
    # An unregistered column would be skipped by re-encryption and lost with the old key.
    if (type(instance), attr) not in ENCRYPTED_COLUMNS:
        raise LookupError(
            f"{type(instance).__name__}.{attr} is not in ENCRYPTED_COLUMNS; register it first"
        )
