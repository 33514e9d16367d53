"""Why an agent refused a command token, as the agent tells it and the control plane reads it.

The agent's ``401`` carries one category of the refusal (never the verifier's exact words,
never anything of the token) as the single detail of the common error body::

    {"error": {"code": "unauthenticated", "message": "command token rejected",
               "details": [{"loc": ["authorization"], "msg": "expired", "type": "expired"}]}}

What this tells someone who is not the control plane: nothing they did not know. A caller
without a trusted key only ever reaches ``malformed`` or ``untrusted`` (an unknown ``kid``
and a bad signature are one category, so the trusted key ids cannot be probed). The other
categories are reached only with a token the control plane signed, whose claims (``exp``,
``jti``, the request it binds) anyone holding it can read anyway.

The agent's time is told in the ``Stellar-Node-Time`` header (Unix seconds, milliseconds
precise) only on answers to a genuinely signed command: accepted, or refused for its time.
The control plane measures the node's clock offset from it (``control_plane/nodes/clock.py``).
"""

from __future__ import annotations

import enum
from typing import Final

from shared.errors import ErrorDetail

NODE_TIME_HEADER: Final = "Stellar-Node-Time"
DETAIL_LOC: Final = "authorization"


class Refusal(enum.StrEnum):
    """A command token's refusal, in categories that are safe to tell the caller."""

    MALFORMED = "malformed"
    UNTRUSTED = "untrusted"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    MISMATCH = "mismatch"


# The verifier's reasons (shared/protocol.py, node_agent/security/verify.py) by category;
# anything else is malformed.
_BY_REASON: Final = {
    "unknown kid": Refusal.UNTRUSTED,
    "bad signature": Refusal.UNTRUSTED,
    "not yet valid": Refusal.NOT_YET_VALID,
    "expired": Refusal.EXPIRED,
    "replayed jti": Refusal.REPLAYED,
    "wrong iss": Refusal.MISMATCH,
    "wrong aud": Refusal.MISMATCH,
    "wrong htm": Refusal.MISMATCH,
    "wrong htu": Refusal.MISMATCH,
    "wrong bdh": Refusal.MISMATCH,
    "wrong act": Refusal.MISMATCH,
    "wrong sub": Refusal.MISMATCH,
    "route takes no commands": Refusal.MISMATCH,
    "lifetime over maximum": Refusal.MISMATCH,
}
CLOCK_REFUSALS: Final = frozenset({Refusal.NOT_YET_VALID, Refusal.EXPIRED})


def categorise(reason: str) -> Refusal:
    """The category of a verifier's refusal reason."""
    return _BY_REASON.get(reason, Refusal.MALFORMED)


def detail(refusal: Refusal) -> ErrorDetail:
    """The one detail of the agent's 401 body that names the category."""
    return ErrorDetail(loc=[DETAIL_LOC], msg=refusal.value, type=refusal.value)


def read(details: list[ErrorDetail]) -> Refusal | None:
    """The category an agent's 401 named, or None (an agent from before categories)."""
    for item in details:
        if item.loc == [DETAIL_LOC]:
            try:
                return Refusal(item.type)
            except ValueError:
                return None
    return None


def parse_node_time(value: str | None) -> float | None:
    """The agent's ``Stellar-Node-Time`` header as Unix seconds, or None if absent or odd."""
    if value is None or len(value) > 32:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 < seconds < 1e11 else None
