"""The command channel: short-lived Ed25519 JWTs from the control plane to one node agent.

A token authorises exactly one HTTP request (method, path with query, body hash) to one node,
once. The control plane calls :func:`mint`; the agent runs :class:`CommandVerifier`, which
refuses anything outside the contract in DESIGN.md ("Command tokens") with
:class:`CommandRejected` carrying a short reason for the log (never the token itself).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

TOKEN_TYPE: Final = "stellar-cmd+jwt"  # noqa: S105 (a media type, not a secret)
ALGORITHM: Final = "EdDSA"
MAX_LIFETIME_SECONDS: Final = 60
MAX_LEEWAY_SECONDS: Final = 30
DEFAULT_LIFETIME_SECONDS: Final = 30
REQUIRED_CLAIMS: Final = (
    "iss",
    "aud",
    "sub",
    "act",
    "htm",
    "htu",
    "bdh",
    "usr",
    "iat",
    "exp",
    "jti",
)
# A token is a few hundred bytes; anything far larger is refused before it is parsed.
MAX_TOKEN_LENGTH: Final = 4096


class CommandRejected(Exception):
    """The token does not authorise this request; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CommandClaims(BaseModel):
    """The claims of a command token, all required."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    iss: str = Field(min_length=1, max_length=128)
    aud: str = Field(pattern=r"^node:[0-9a-f-]{36}$")
    sub: str = Field(pattern=r"^(node|server:[0-9a-f-]{36})$")
    act: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$", max_length=64)
    htm: str = Field(pattern=r"^[A-Z]{3,7}$")
    htu: str = Field(min_length=1, max_length=2048)
    bdh: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$")
    usr: str = Field(min_length=1, max_length=64)
    iat: int
    exp: int
    jti: str = Field(pattern=r"^[A-Za-z0-9_-]{22,64}$")


class ReplayCache(Protocol):
    """Remembers token ids until their expiry."""

    def remember(self, jti: str, expires_at: int) -> bool:
        """Record ``jti``; return False if it was already recorded (a replay)."""
        ...


def body_hash(body: bytes) -> str:
    """base64url (no padding) of the SHA-256 of the exact request body."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode("ascii")


def node_audience(node_id: uuid.UUID | str) -> str:
    """The ``aud`` claim for a node."""
    return f"node:{uuid.UUID(str(node_id))}"


def mint(
    *,
    private_key: Ed25519PrivateKey,
    kid: str,
    issuer: str,
    node_id: uuid.UUID | str,
    subject: str,
    action: str,
    method: str,
    path: str,
    body: bytes,
    user: str,
    lifetime: int = DEFAULT_LIFETIME_SECONDS,
    now: float | None = None,
) -> str:
    """Sign a token that authorises ``method path`` with ``body`` on one node, once."""
    if not 0 < lifetime <= MAX_LIFETIME_SECONDS:
        raise ValueError(f"lifetime must be 1..{MAX_LIFETIME_SECONDS} seconds")
    issued = int(time.time() if now is None else now)
    claims = CommandClaims(
        iss=issuer,
        aud=node_audience(node_id),
        sub=subject,
        act=action,
        htm=method.upper(),
        htu=path,
        bdh=body_hash(body),
        usr=user,
        iat=issued,
        exp=issued + lifetime,
        jti=secrets.token_urlsafe(18),
    )
    return jwt.encode(
        claims.model_dump(),
        private_key,
        algorithm=ALGORITHM,
        headers={"kid": kid, "typ": TOKEN_TYPE},
    )


class CommandVerifier:
    """Checks command tokens for one node against a fixed set of trusted public keys."""

    def __init__(
        self,
        *,
        trusted_keys: Mapping[str, Ed25519PublicKey],
        issuer: str,
        node_id: uuid.UUID | str,
        replay_cache: ReplayCache,
        leeway: int = 5,
        max_lifetime: int = MAX_LIFETIME_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= leeway <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"leeway must be 0..{MAX_LEEWAY_SECONDS} seconds")
        if not 0 < max_lifetime <= MAX_LIFETIME_SECONDS:
            raise ValueError(f"max lifetime must be 1..{MAX_LIFETIME_SECONDS} seconds")
        self._keys = dict(trusted_keys)
        self._issuer = issuer
        self._audience = node_audience(node_id)
        self._replay = replay_cache
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._clock = clock

    def verify(self, token: str, *, method: str, path: str, body: bytes) -> CommandClaims:
        """Return the claims if ``token`` authorises this exact request; else raise."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise CommandRejected("token too long")
        header = self._header(token)
        key = self._keys.get(header["kid"])
        if key is None:
            raise CommandRejected("unknown kid")
        payload = self._signed_payload(token, key)
        try:
            claims = CommandClaims.model_validate(payload)
        except ValidationError as err:
            fields = ",".join(sorted({str(e["loc"][0]) for e in err.errors() if e["loc"]}))
            raise CommandRejected(f"malformed claims: {fields or 'payload'}") from err
        self._check_times(claims)
        self._check_binding(claims, method=method, path=path, body=body)
        # Last, so that a token refused for any other reason does not burn its jti. Kept for
        # the largest leeway any configuration may use, so raising it cannot reopen a window.
        if not self._replay.remember(claims.jti, claims.exp + MAX_LEEWAY_SECONDS):
            raise CommandRejected("replayed jti")
        return claims

    def _header(self, token: str) -> dict[str, Any]:
        # Read only the header segment here (PyJWT parses the whole token again, with the
        # signature, in _signed_payload); this pre-check just picks the key.
        segment = token.split(".", 1)[0]
        try:
            header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        except (ValueError, TypeError) as err:
            raise CommandRejected("unreadable header") from err
        if not isinstance(header, dict):
            raise CommandRejected("unreadable header")
        if "crit" in header:
            raise CommandRejected("critical header extensions are not supported")
        if header.get("alg") != ALGORITHM:
            raise CommandRejected("algorithm not allowed")
        if header.get("typ") != TOKEN_TYPE:
            raise CommandRejected("wrong typ")
        if not isinstance(header.get("kid"), str):
            raise CommandRejected("missing kid")
        return header

    def _signed_payload(self, token: str, key: Ed25519PublicKey) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                # Times are checked in _check_times against the injectable clock.
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.MissingRequiredClaimError as err:
            raise CommandRejected(f"missing claim {err.claim}") from err
        except jwt.InvalidSignatureError as err:
            raise CommandRejected("bad signature") from err
        except jwt.InvalidAudienceError as err:
            raise CommandRejected("wrong aud") from err
        except jwt.InvalidIssuerError as err:
            raise CommandRejected("wrong iss") from err
        except jwt.PyJWTError as err:
            raise CommandRejected(f"invalid token: {type(err).__name__}") from err
        return payload

    def _check_times(self, claims: CommandClaims) -> None:
        now = self._clock()
        if claims.iat > now + self._leeway:
            raise CommandRejected("not yet valid")
        if claims.exp <= claims.iat or claims.exp - claims.iat > self._max_lifetime:
            raise CommandRejected("lifetime over maximum")
        if claims.exp + self._leeway <= now:
            raise CommandRejected("expired")

    def _check_binding(self, claims: CommandClaims, *, method: str, path: str, body: bytes) -> None:
        if claims.htm != method.upper():
            raise CommandRejected("wrong htm")
        if claims.htu != path:
            raise CommandRejected("wrong htu")
        if not secrets.compare_digest(claims.bdh, body_hash(body)):
            raise CommandRejected("wrong bdh")
