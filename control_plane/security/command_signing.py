"""The control plane's half of the command channel: it alone holds the signing key."""

from __future__ import annotations

import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.command_keys import key_id, load_private_key, public_key_text
from shared.protocol import DEFAULT_LIFETIME_SECONDS, mint


class CommandSigner:
    """Mints one-request command tokens for nodes."""

    def __init__(self, private_key: Ed25519PrivateKey, *, issuer: str) -> None:
        self._key = private_key
        self.issuer = issuer
        self.kid = key_id(private_key.public_key())
        self.public_key = public_key_text(private_key.public_key())

    @classmethod
    def from_file(cls, path: Path, *, issuer: str) -> CommandSigner:
        return cls(load_private_key(path), issuer=issuer)

    def sign(
        self,
        *,
        node_id: uuid.UUID,
        subject: str,
        action: str,
        method: str,
        path: str,
        body: bytes,
        user: str,
        lifetime: int = DEFAULT_LIFETIME_SECONDS,
    ) -> str:
        return mint(
            private_key=self._key,
            kid=self.kid,
            issuer=self.issuer,
            node_id=node_id,
            subject=subject,
            action=action,
            method=method,
            path=path,
            body=body,
            user=user,
            lifetime=lifetime,
        )
