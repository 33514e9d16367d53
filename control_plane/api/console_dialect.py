"""The console as Pterodactyl's Wings speaks it, translated from our node's frames.

Our agent's frames are already Wings-shaped (``{"event": ..., "args": [...]}``, the same
event names for output, status and the client's requests); what differs is translated here,
frame by frame, for the token socket (:mod:`control_plane.api.console_socket`):

- ``stats``: Wings sends one argument, a JSON *string* with ``memory_bytes``,
  ``memory_limit_bytes``, ``cpu_absolute``, ``network{rx_bytes, tx_bytes}``, ``uptime``
  (milliseconds), ``state`` and ``disk_bytes``; ours is an object with other names.
- ``status``: Wings knows ``offline``, ``starting``, ``running``, ``stopping``; a crashed or
  failed install is ``offline`` there, and an install is ``install started`` /
  ``install completed`` around the ``install output`` lines.
- ``error`` (a refusal, a node problem) is Wings' ``daemon error``.
- The line our agent prints when it drops output is followed by Wings' ``throttled``.

While the socket's token has expired nothing is relayed (:attr:`WingsDialect.gated`).
"""

from __future__ import annotations

import json
from typing import Any, Final

from shared.node_api import THROTTLE_NOTICE

_STATES: Final = {"offline", "starting", "running", "stopping"}
# "[stellar] output throttled: " — the notice's fixed beginning.
_THROTTLE_PREFIX: Final = THROTTLE_NOTICE.split("{", 1)[0]


def frame(event: str, *args: Any) -> str:
    return json.dumps({"event": event, "args": list(args)}, separators=(",", ":"))


def wings_stats(stats: dict[str, Any]) -> str:
    """Our stats object as the JSON string Wings sends."""
    uptime = stats.get("uptime_seconds")
    return json.dumps(
        {
            "memory_bytes": int(stats.get("memory_bytes") or 0),
            "memory_limit_bytes": int(stats.get("memory_limit_bytes") or 0),
            "cpu_absolute": round(float(stats.get("cpu_percent") or 0.0), 3),
            "network": {
                "rx_bytes": int(stats.get("network_rx_bytes") or 0),
                "tx_bytes": int(stats.get("network_tx_bytes") or 0),
            },
            "uptime": int(float(uptime) * 1000) if uptime is not None else 0,
            "state": wings_state(str(stats.get("state") or "offline")),
            "disk_bytes": int(stats.get("disk_bytes") or 0),
        },
        separators=(",", ":"),
    )


def wings_state(state: str) -> str:
    return state if state in _STATES else "offline"


class WingsDialect:
    """Translates one socket's node frames; remembers what the translation depends on."""

    def __init__(self) -> None:
        self._installing = False
        # Set while the socket's token has expired: nothing reaches the client.
        self.gated = False
        # The last ``status`` the client got (a recorded state it already has is not repeated).
        self._last_status: str | None = None

    def recorded_state(self, state: str) -> list[str]:
        """Frames for a state change the control plane recorded (the node's own ``status``
        usually said it already)."""
        if self.gated:
            return []
        unchanged = (state == "installing") == self._installing
        if unchanged and wings_state(state) == self._last_status:
            return []
        return self._status(state)

    def translate(self, raw: str) -> list[str]:
        if self.gated:
            return []
        try:
            message = json.loads(raw)
            event, args = message["event"], list(message.get("args") or [])
        except (ValueError, KeyError, TypeError):
            return []
        if event == "stats" and args and isinstance(args[0], dict):
            return [frame("stats", wings_stats(args[0]))]
        if event == "status" and args:
            return self._status(str(args[0]))
        if event == "error":
            return [frame("daemon error", *args)]
        if event == "console output" and args and str(args[0]).startswith(_THROTTLE_PREFIX):
            return [raw, frame("throttled", "console")]
        return [raw]

    def _status(self, state: str) -> list[str]:
        frames: list[str] = []
        if state == "installing" and not self._installing:
            self._installing = True
            frames.append(frame("install started"))
        elif state != "installing" and self._installing:
            self._installing = False
            frames.append(frame("install completed"))
        self._last_status = wings_state(state)
        frames.append(frame("status", self._last_status))
        return frames
