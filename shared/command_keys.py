"""Ed25519 keys of the command channel: generation, files, and the text forms in configs.

The control plane holds the private key (PKCS#8 PEM, file mode 0600); each agent lists the
public keys it trusts as ``kid = "<base64url raw key>"``. The ``kid`` is derived from the
public key, so the same key always has the same name on both sides.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class KeyFormatError(ValueError):
    """A key or key id in a file or setting is not in the expected form."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's name: ``ed25519-`` and 16 hex digits of the SHA-256 of the raw public key."""
    return "ed25519-" + hashlib.sha256(_raw_public(public_key)).hexdigest()[:16]


def public_key_text(public_key: Ed25519PublicKey) -> str:
    """The base64url form of the raw 32-byte public key, as written in agent configs."""
    return _b64url(_raw_public(public_key))


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Read a public key written by :func:`public_key_text`."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as err:
        raise KeyFormatError("public key is not base64url") from err
    if len(raw) != 32:
        raise KeyFormatError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def check_kid(kid: str) -> str:
    """Refuse key ids that are not short plain names (they are map keys, never paths)."""
    if not KID_PATTERN.fullmatch(kid):
        raise KeyFormatError(f"key id {kid!r} must be 1-64 characters of A-Z a-z 0-9 _ -")
    return kid


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write the key as PKCS#8 PEM in a file created with mode 0600 (never readable by others)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from a PEM file."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise KeyFormatError(f"{path} is not an unencrypted PEM private key") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError(f"{path} does not hold an Ed25519 key")
    return key
