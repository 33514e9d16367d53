"""Signed links: Pterodactyl's ``signed_url`` answers (a file's or a backup's download, an
upload), a URL a client opens without any other credential.

A link's token names one action, one server, one target (a file's path, a backup's id; an
upload's directory is chosen when it is used), the user and the credential it was asked
with (a session or an API key, by id) and that credential's scopes; it lives
``LIFETIME_SECONDS``. It grants nothing on its own: when it is used, the credential is read
again (revoked key, ended session, disabled user: refused), the user's access to the server
and the permission are decided again as for the route that issued it, and its ``jti`` is
recorded so that it works once (``control_plane/services/signed_link_uses.py``). HS256 under
a key derived from ``STELLAR_AUTH_SECRET`` for this use only, pinned algorithm, audience and
issuer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Final, Literal

import jwt

from control_plane.security.caller import Caller
from control_plane.security.console_tokens import ConsoleGrant, credential_claims, grant_of

LIFETIME_SECONDS: Final = 300
Action = Literal["file.download", "file.upload", "backup.download"]
_ACTIONS: Final = frozenset({"file.download", "file.upload", "backup.download"})
_ALGORITHM: Final = "HS256"
_AUDIENCE: Final = "stellarstack:signed-link"
_ISSUER: Final = "stellarstack:control-plane"
_REQUIRED: Final = [
    "exp", "iat", "sub", "aud", "iss", "srv", "via", "cred", "scp", "jti", "act", "tgt",
]  # fmt: skip


class LinkRefused(Exception):
    """The token opens nothing: forged, malformed, expired, or for another action."""


@dataclass(frozen=True)
class LinkGrant:
    """What a verified link says: whose credential (as a console grant: the same re-reading
    of it applies), which action on which target, its one-use id."""

    grant: ConsoleGrant
    action: Action
    target: str
    jti: str

    @property
    def server_id(self) -> uuid.UUID:
        return self.grant.server_id


def _key(secret: str) -> bytes:
    # Its own key: a link's token is no console token, session token or anything else.
    return hmac.new(secret.encode(), b"stellarstack signed link v1", hashlib.sha256).digest()


def issue(
    secret: str,
    caller: Caller,
    server_id: uuid.UUID,
    action: Action,
    target: str,
    *,
    lifetime: int = LIFETIME_SECONDS,
    now: float | None = None,
) -> tuple[str, float]:
    """A token for ``action`` on ``target`` of one server, and when it expires."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": _ISSUER,
        "aud": _AUDIENCE,
        **credential_claims(caller, server_id, issued=issued, lifetime=lifetime),
        "act": action,
        "tgt": target,
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(claims, _key(secret), algorithm=_ALGORITHM), float(issued + lifetime)


def verify(secret: str, token: object, action: Action) -> LinkGrant:
    """The grant of ``token`` if it is valid, unexpired and for ``action``; else
    :class:`LinkRefused` (whether it was used is the store's to say)."""
    if not isinstance(token, str) or not 16 <= len(token) <= 8192:
        raise LinkRefused("malformed")
    try:
        claims = jwt.decode(
            token,
            _key(secret),
            algorithms=[_ALGORITHM],
            audience=_AUDIENCE,
            issuer=_ISSUER,
            options={"require": _REQUIRED},
        )
    except jwt.PyJWTError as err:
        raise LinkRefused(str(err)) from err
    if claims["act"] != action or claims["act"] not in _ACTIONS:
        raise LinkRefused("a link for another action")
    try:
        grant = grant_of(claims)
        target, jti = claims["tgt"], claims["jti"]
        if not isinstance(target, str) or not isinstance(jti, str) or not 8 <= len(jti) <= 64:
            raise ValueError("malformed target or id")
    except (TypeError, ValueError, KeyError) as err:
        raise LinkRefused("malformed claims") from err
    return LinkGrant(grant=grant, action=claims["act"], target=target, jti=jti)
