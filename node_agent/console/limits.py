"""The caps that protect a node from its consoles (``[console]`` in the agent's config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ConsoleLimits(BaseModel):
    """Per-server and per-socket console limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Recent lines kept per server for new viewers and ``GET .../logs``.
    buffer_lines: int = Field(default=500, ge=10, le=10_000)
    # Output lines passed on per second per server; the excess is dropped with one notice.
    lines_per_second: int = Field(default=500, ge=1, le=100_000)
    # Open console sockets per server; one more is refused with HTTP 429.
    sockets_per_server: int = Field(default=8, ge=1, le=256)
    # Inbound messages per second per socket; the excess is dropped with an error event.
    inbound_messages_per_second: int = Field(default=10, ge=1, le=1000)
    # Largest inbound message; a bigger one closes the socket with 1009.
    inbound_message_bytes: int = Field(default=4096, ge=256, le=1024 * 1024)
    # A socket lives until its token's ``exp`` plus this, unless renewed with ``auth``.
    token_grace_seconds: float = Field(default=60.0, ge=0, le=3600)
    # Messages queued for one slow viewer before its output is dropped.
    viewer_queue_messages: int = Field(default=1024, ge=16, le=100_000)
