"""How long a WebSocket opened with a command token may stay open, and how it is renewed.

A command token lives at most a minute, a console much longer. A socket lives until the
token's ``exp`` plus a grace period; before that the agent sends ``token expiring``, and the
control plane either sends ``{"event": "auth", "args": [<new token>]}`` (a fresh token for
``GET`` of the same path, same ``act`` and ``sub``) or lets the agent close the socket with
:data:`TOKEN_EXPIRED_CLOSE_CODE`, and reconnects.
"""

from __future__ import annotations

import time
from typing import Final

from shared.protocol import CommandClaims, CommandRejected, CommandVerifier

TOKEN_EXPIRED_CLOSE_CODE: Final = 4001
# ``token expiring`` is sent this long before the socket's end.
WARNING_SECONDS: Final = 30.0


class SocketLease:
    """The end of one socket's life, moved on by each valid renewal."""

    def __init__(
        self, verifier: CommandVerifier, claims: CommandClaims, path: str, grace_seconds: float
    ) -> None:
        self._verifier = verifier
        self._claims = claims
        self._path = path
        self._grace = grace_seconds
        self.expires_at = claims.exp + grace_seconds

    def seconds_left(self) -> float:
        return self.expires_at - time.time()

    def warn_at(self) -> float:
        """Seconds from now when ``token expiring`` is due (at once if less remains)."""
        return max(0.0, self.seconds_left() - min(WARNING_SECONDS, self._grace))

    def renew(self, token: str) -> None:
        """Accept a fresh token for this socket, or raise :class:`CommandRejected`."""
        claims = self._verifier.verify(token, method="GET", path=self._path, body=b"")
        if claims.act != self._claims.act or claims.sub != self._claims.sub:
            raise CommandRejected("the token is for another action or subject")
        self._claims = claims
        self.expires_at = claims.exp + self._grace
