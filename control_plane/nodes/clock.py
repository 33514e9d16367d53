"""A node's clock offset, measured on the answers to our own commands, and what a refusal of
a command token means for the client.

The agent tells its time (``Stellar-Node-Time``, ``shared/refusals.py``) on every answer to
a command we signed, including a refusal for the token's time. The offset is that time minus
the middle of our request's round trip, so a fast loopback call measures it to a few
milliseconds and a slow one to within half its round trip. Each transport keeps the latest
offset per node; the health poll stores it on the node and in
``stellar_node_clock_offset_seconds`` (``control_plane/nodes/health.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Final

from shared.errors import UpstreamFailed
from shared.refusals import NODE_TIME_HEADER, Refusal, parse_node_time

# The ways a token can be refused, as the client reads them (the clock's are built below).
_REFUSED: Final = {
    Refusal.REPLAYED: "refused our command as replayed",
    Refusal.MISMATCH: (
        "refused our command as not matching the request (a proxy that rewrites requests, "
        "or another node id or version of the node API?)"
    ),
    Refusal.MALFORMED: "refused our command as malformed (another version of the node API?)",
}


class NodeClockSkewed(UpstreamFailed):
    """The node refused our command for its time: its clock or ours is off.

    ``offset``: the node's clock minus ours in seconds, when the node told its time."""

    def __init__(self, message: str, *, offset: float | None) -> None:
        super().__init__(message)
        self.offset = offset


def measure(headers: Mapping[str, str], *, sent_at: float, received_at: float) -> float | None:
    """The node's clock minus ours from one answer's headers, or None if it did not say."""
    node_time = parse_node_time(headers.get(NODE_TIME_HEADER))
    if node_time is None:
        return None
    return node_time - (sent_at + received_at) / 2


def describe_offset(offset: float) -> str:
    """``"90 s ahead of"`` / ``"90 s behind"`` the control plane's clock, rounded."""
    seconds = abs(offset)
    amount = f"{seconds:.0f} s" if seconds >= 1.5 else f"{seconds:.1f} s"
    return f"{amount} ahead of" if offset > 0 else f"{amount} behind"


def skewed(node: str, refusal: Refusal, offset: float | None) -> NodeClockSkewed:
    """The error for a token the node found expired or not yet valid."""
    how = "expired" if refusal is Refusal.EXPIRED else "not yet valid"
    if offset is not None:
        where = f"its clock is {describe_offset(offset)} the control plane's"
    else:
        where = "its clock and the control plane's disagree"
    return NodeClockSkewed(
        f"node {node!r} refused our command as {how}: {where}; "
        "set the time right on the node or the control plane (NTP)",
        offset=offset,
    )


def refused(node: str, refusal: Refusal | None, kid: str, offset: float | None) -> UpstreamFailed:
    """The client's error for a node's 401, by the category the node named."""
    if refusal in (Refusal.EXPIRED, Refusal.NOT_YET_VALID):
        return skewed(node, refusal, offset)
    if refusal is not None and refusal in _REFUSED:
        return UpstreamFailed(f"node {node!r} {_REFUSED[refusal]}")
    # Untrusted, or an agent from before categories: the common cause is the key.
    return UpstreamFailed(f"node {node!r} refused our command: does its config trust key {kid}?")


class ClockReadings:
    """The latest clock offset measured for each node by one transport (this replica)."""

    def __init__(self) -> None:
        self._offsets: dict[uuid.UUID, float] = {}

    def record(self, node_id: uuid.UUID, offset: float | None) -> None:
        if offset is not None:
            self._offsets[node_id] = offset

    def latest(self, node_id: uuid.UUID) -> float | None:
        return self._offsets.get(node_id)

    def forget(self, node_id: uuid.UUID) -> None:
        self._offsets.pop(node_id, None)
