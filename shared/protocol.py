"""The command channel: short-lived Ed25519 JWTs from the control plane to one node agent.

A token authorises exactly one HTTP request (method, path with query, body hash) to one node,
once. The control plane calls :func:`mint`; the agent runs :class:`CommandVerifier`, which
refuses anything outside the contract in DESIGN.md ("Command tokens") with
:class:`CommandRejected` carrying a short reason for the log (never the token itself).

Tokens are standard JWTs (RFC 7519, EdDSA per RFC 8037) minted by PyJWT. The agent reads the
one form the contract allows itself rather than through PyJWT's general decoder, which cost
~30 µs of parsing per command on top of the signature check: three strict base64url segments,
a header that must be exactly ``alg: EdDSA`` + ``typ`` + a ``kid`` from the fixed map, the
signature checked by libsodium before the payload is parsed, and header and payload read as
strict JSON (``shared/strict_json.py``: no byte order mark, no member named twice), so that
one token has one meaning. A differential test holds it to PyJWT: no mangled token is
accepted that PyJWT's decode refuses.

Why not PyJWT's ``PyJWS`` (issue 13, item 5, measured with PyJWT 2.15.1, PyNaCl 1.6.2,
Python 3.11): a private ``jwt.PyJWS`` knowing only ``EdDSA``, verified by libsodium through
a registered ``jwt.algorithms.Algorithm``, behind the same pre-filter (canonical base64url,
the contract header, strict JSON), passed every unit and attack test. But PyJWS decodes
every segment its own way (each byte checked against the alphabet in Python, the result
re-encoded to compare, the header JSON parsed on every token): ~30 µs more per token. In
``bench/command_channel.py``, three runs each, alternating on one shared 2-core machine,
"verify + replay cache" went from 80 / 120 / 74 µs (median) to 103 / 160 / 108 µs, and the
signed round trip against the same stack unsigned from 1.71 / 1.50 / 1.43 to 1.84 / 1.70 /
1.70, over the 1.5 allowed. So this path stays; that variant is in this module's history
(reverted), to measure again when PyJWS changes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import strict_json

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
# The longest request target (path and query, as sent) a command may authorise: the one
# definition the file API's path limit (shared/files_api.py) and the token's length follow.
MAX_HTU_LENGTH: Final = 4096
# A request target as sent: RFC 3986 characters, which JSON writes as they are.
HTU_PATTERN: Final = r"^/[A-Za-z0-9._~!$&'()*+,;=:@/?%-]*$"
MAX_ISSUER_LENGTH: Final = 128
MAX_USER_LENGTH: Final = 64
ACCEPTED_HEADERS_KEPT: Final = 16


def _base64url_length(size: int) -> int:
    """Characters of ``size`` bytes in unpadded base64url."""
    return -(-size * 4 // 3)


# The JSON of a genuine token at its longest: PyJWT's header (alg, kid, typ); every claim but
# htu, with iss and usr escaped by JSON at up to 12 characters each (a surrogate pair); htu.
_HEADER_JSON_MAX: Final = 128
_CLAIMS_JSON_MAX: Final = 12 * (MAX_ISSUER_LENGTH + MAX_USER_LENGTH) + 512 + MAX_HTU_LENGTH
_SIGNATURE_BYTES: Final = 64
# Anything longer is refused before it is parsed.
MAX_TOKEN_LENGTH: Final = (
    _base64url_length(_HEADER_JSON_MAX)
    + 1
    + _base64url_length(_CLAIMS_JSON_MAX)
    + 1
    + _base64url_length(_SIGNATURE_BYTES)
)


class CommandRejected(Exception):
    """The token does not authorise this request; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CommandClaims(BaseModel):
    """The claims of a command token, all required."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    iss: str = Field(min_length=1, max_length=MAX_ISSUER_LENGTH)
    aud: str = Field(pattern=r"^node:[0-9a-f-]{36}$")
    sub: str = Field(pattern=r"^(node|server:[0-9a-f-]{36})$")
    act: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$", max_length=64)
    htm: str = Field(pattern=r"^[A-Z]{3,7}$")
    htu: str = Field(max_length=MAX_HTU_LENGTH, pattern=HTU_PATTERN)
    bdh: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$")
    usr: str = Field(min_length=1, max_length=MAX_USER_LENGTH)
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


_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_BASE64URL_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# By length mod 4: a last character after 2 data bytes carries 2 spare bits, after 1 byte 4.
_UNUSED_BITS: Final = {3: 0b11, 2: 0b1111}


def _decode_segment(segment: str, what: str) -> bytes:
    """One unpadded base64url segment of a compact JWS, strictly."""
    if not _BASE64URL.fullmatch(segment):
        raise CommandRejected(f"unreadable {what}")
    # Only the canonical encoding: the bits the last character carries beyond the data must
    # be zero, so that one signed token has exactly one spelling.
    unused_bits = _UNUSED_BITS.get(len(segment) % 4, 0)
    if _BASE64URL_ALPHABET.index(segment[-1]) & unused_bits:
        raise CommandRejected(f"unreadable {what}")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error as err:
        raise CommandRejected(f"unreadable {what}") from err


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object read strictly: one spelling, one meaning (no BOM, no repeated member)."""
    try:
        value = strict_json.loads(raw)
    except strict_json.NotStrictJson as err:
        raise CommandRejected(f"unreadable {what}: {err.reason}") from err
    if not isinstance(value, dict):
        raise CommandRejected(f"unreadable {what}")
    return value


def _header(segment: str) -> dict[str, Any]:
    """The protected header, refused unless it is exactly the contract's."""
    header = _json_object(_decode_segment(segment, "header"), "header")
    if "crit" in header:
        raise CommandRejected("critical header extensions are not supported")
    if header.get("alg") != ALGORITHM:
        raise CommandRejected("algorithm not allowed")
    if header.get("typ") != TOKEN_TYPE:
        raise CommandRejected("wrong typ")
    if not isinstance(header.get("kid"), str):
        raise CommandRejected("missing kid")
    return header


def _claims(payload: bytes) -> CommandClaims:
    claims = _json_object(payload, "payload")
    for name in REQUIRED_CLAIMS:
        if claims.get(name) is None:
            raise CommandRejected(f"missing claim {name}")
    try:
        return CommandClaims.model_validate(claims)
    except ValidationError as err:
        fields = ",".join(sorted({str(e["loc"][0]) for e in err.errors() if e["loc"]}))
        raise CommandRejected(f"malformed claims: {fields or 'payload'}") from err


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
        # libsodium verifies in ~60% of OpenSSL's time here and refuses non-canonical
        # signatures and small-order keys; the keys are configured as cryptography objects.
        self._keys = {kid: VerifyKey(key.public_bytes_raw()) for kid, key in trusted_keys.items()}
        self._accepted_headers: dict[str, VerifyKey] = {}
        self._issuer = issuer
        self._audience = node_audience(node_id)
        self._replay = replay_cache
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._clock = clock

    def verify(self, token: str, *, method: str, path: str, body: bytes) -> CommandClaims:
        """Return the claims if ``token`` authorises this exact request; else raise."""
        return self.verify_body(self.verify_request(token, method=method, path=path), body)

    def verify_request(self, token: str, *, method: str, path: str) -> CommandClaims:
        """Everything that can be decided before the request's body is read: the token is
        ours, for this node, in its lifetime, for this method and path. Its claims then go
        to :meth:`verify_body` with the body; nothing else may act on them.

        The agent asks this first, so that whoever reaches its port without a token of ours
        is refused at once, never holding a connection and a body's buffer meanwhile.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise CommandRejected("token too long")
        segments = token.split(".")
        if len(segments) != 3:
            raise CommandRejected("malformed token")
        header_segment, payload_segment, signature_segment = segments
        key = self._key_for(header_segment)
        payload_bytes = _decode_segment(payload_segment, "payload")
        try:
            key.verify(
                f"{header_segment}.{payload_segment}".encode("ascii"),
                _decode_segment(signature_segment, "signature"),
            )
        except (BadSignatureError, ValueError) as err:
            raise CommandRejected("bad signature") from err
        claims = _claims(payload_bytes)
        if claims.iss != self._issuer:
            raise CommandRejected("wrong iss")
        if claims.aud != self._audience:
            raise CommandRejected("wrong aud")
        self._check_times(claims)
        if claims.htm != method.upper():
            raise CommandRejected("wrong htm")
        if claims.htu != path:
            raise CommandRejected("wrong htu")
        return claims

    def verify_body(self, claims: CommandClaims, body: bytes) -> CommandClaims:
        """The second half of :meth:`verify`, for claims :meth:`verify_request` returned:
        the body's hash, the lifetime again (the body may have taken its time), single use."""
        self._check_times(claims)
        if not secrets.compare_digest(claims.bdh, body_hash(body)):
            raise CommandRejected("wrong bdh")
        # Last, so that a token refused for any other reason does not burn its jti. Kept for
        # the largest leeway any configuration may use, so raising it cannot reopen a window.
        if not self._replay.remember(claims.jti, claims.exp + MAX_LEEWAY_SECONDS):
            raise CommandRejected("replayed jti")
        return claims

    def _key_for(self, header_segment: str) -> VerifyKey:
        # The control plane sends the same header bytes with every token of one key: once a
        # header was found to be the contract's, later tokens skip parsing it again. Only
        # accepted headers are kept, and few of them (anyone may write a well-formed one).
        key = self._accepted_headers.get(header_segment)
        if key is not None:
            return key
        key = self._keys.get(_header(header_segment)["kid"])
        if key is None:
            raise CommandRejected("unknown kid")
        if len(self._accepted_headers) >= ACCEPTED_HEADERS_KEPT:
            self._accepted_headers.clear()
        self._accepted_headers[header_segment] = key
        return key

    def _check_times(self, claims: CommandClaims) -> None:
        now = self._clock()
        if claims.iat > now + self._leeway:
            raise CommandRejected("not yet valid")
        if claims.exp <= claims.iat or claims.exp - claims.iat > self._max_lifetime:
            raise CommandRejected("lifetime over maximum")
        if claims.exp + self._leeway <= now:
            raise CommandRejected("expired")
