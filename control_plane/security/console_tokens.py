"""Console tokens: how a client that cannot send a credential on a WebSocket handshake opens
a console (Pterodactyl's clients: they ask the panel for a token, connect, then send it in an
``auth`` event, and ask for a fresh one before it expires).

A token names one server, one user and the credential it was asked for with (a session or an
API key, by id) and that credential's scopes, and lives ``STELLAR_CONSOLE_TOKEN_SECONDS`` (10
minutes unless set). It grants nothing on its own: the socket reads that credential again at
every ``auth`` and every few seconds (a revoked key, an ended session or a disabled user
closes it), and authorizes each event against the user's access at that moment. HS256 under
a key derived from ``STELLAR_AUTH_SECRET`` (only the control plane makes and reads them),
pinned algorithm, audience and issuer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final, Literal

import jwt

from control_plane.security.api_keys import Scope
from control_plane.security.caller import Caller

LIFETIME_SECONDS: Final = 600
_ALGORITHM: Final = "HS256"
_AUDIENCE: Final = "stellarstack:console"
_ISSUER: Final = "stellarstack:control-plane"
_REQUIRED: Final = ["exp", "iat", "sub", "aud", "iss", "srv", "via", "cred", "scp", "jti"]


class ConsoleTokenRefused(Exception):
    """Why a token opens nothing: ``expired``, or ``invalid`` (forged, malformed, other use)."""

    def __init__(self, reason: Literal["expired", "invalid"]) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ConsoleGrant:
    """What a verified token says: whose credential, for which server, until when."""

    user_id: uuid.UUID
    server_id: uuid.UUID
    via: Literal["session", "api_key"]
    credential_id: uuid.UUID
    scopes: frozenset[Scope]
    expires_at: float


def _key(secret: str) -> bytes:
    # Its own key: a console token is no session token, CSRF token or anything else.
    return hmac.new(secret.encode(), b"stellarstack console token v1", hashlib.sha256).digest()


def credential_claims(
    caller: Caller, server_id: uuid.UUID, *, issued: int, lifetime: int
) -> dict[str, object]:
    """The claims that bind a token to ``caller``'s credential (a session or an API key, by
    id, with its scopes) and one server, from ``issued`` for ``lifetime`` seconds; the
    console tokens' and the signed links' (control_plane/security/signed_links.py)."""
    credential = caller.session_id if caller.via == "session" else caller.api_key_id
    if credential is None:
        raise ValueError("a token is issued for a session or an API key")
    return {
        "sub": str(caller.user_id),
        "srv": str(server_id),
        "via": caller.via,
        "cred": str(credential),
        "scp": sorted(scope.value for scope in caller.scopes),
        "iat": issued,
        "exp": issued + lifetime,
    }


def grant_of(claims: dict[str, Any]) -> ConsoleGrant:
    """The grant :func:`credential_claims` wrote; TypeError, ValueError or KeyError if the
    claims are malformed."""
    return ConsoleGrant(
        user_id=uuid.UUID(claims["sub"]),
        server_id=uuid.UUID(claims["srv"]),
        via=_via(claims["via"]),
        credential_id=uuid.UUID(claims["cred"]),
        scopes=frozenset(Scope(value) for value in claims["scp"]),
        expires_at=float(claims["exp"]),
    )


def issue(
    secret: str,
    caller: Caller,
    server_id: uuid.UUID,
    *,
    lifetime: int = LIFETIME_SECONDS,
    now: float | None = None,
) -> tuple[str, float]:
    """A token for ``caller``'s console on one server, and when it expires (epoch seconds)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": _ISSUER,
        "aud": _AUDIENCE,
        **credential_claims(caller, server_id, issued=issued, lifetime=lifetime),
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(claims, _key(secret), algorithm=_ALGORITHM), float(issued + lifetime)


def verify(secret: str, token: str, *, now: float | None = None) -> ConsoleGrant:
    """The grant ``token`` carries, or :class:`ConsoleTokenRefused`."""
    if not isinstance(token, str) or not 16 <= len(token) <= 2048:
        raise ConsoleTokenRefused("invalid")
    options: jwt.types.Options = {"require": _REQUIRED}
    if now is not None:
        options["verify_exp"] = False
    try:
        claims = jwt.decode(
            token,
            _key(secret),
            algorithms=[_ALGORITHM],
            audience=_AUDIENCE,
            issuer=_ISSUER,
            options=options,
        )
    except jwt.ExpiredSignatureError as err:
        raise ConsoleTokenRefused("expired") from err
    except jwt.PyJWTError as err:
        raise ConsoleTokenRefused("invalid") from err
    try:
        grant = grant_of(claims)
    except (TypeError, ValueError, KeyError) as err:
        raise ConsoleTokenRefused("invalid") from err
    if now is not None and grant.expires_at <= now:
        raise ConsoleTokenRefused("expired")
    return grant


def _via(value: object) -> Literal["session", "api_key"]:
    if value == "session":
        return "session"
    if value == "api_key":
        return "api_key"
    raise ValueError("unknown credential kind")
