"""A webhook receiver on loopback, and a resolver tests set names in (shared.ssrf's
``HostResolver``): the control plane reaches the receiver through a *name*, as the SSRF
guard lets a name resolve into loopback only when STELLAR_WEBHOOK_TEST_ALLOW_NETWORKS says so.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDictProxy


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    at: float
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass
class Receiver:
    """Answers each request with the next of ``statuses`` (200 once they run out) and
    ``headers``; while ``hold`` is clear, holds every request open instead (a hung endpoint)."""

    statuses: list[int] = field(default_factory=list)
    hold: asyncio.Event | None = None
    headers: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/in", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self._arrived:
            self.received.append(Received(time.monotonic(), request.headers, body))
            self._arrived.notify_all()
        if self.hold is not None:
            await self.hold.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok", headers=self.headers)

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """The first ``count`` requests, once they have arrived."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return self.received[:count]


@dataclass
class Names:
    """A resolver whose answers the test sets (and changes: DNS rebinding)."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    lookups: int = 0

    async def __call__(self, host: str) -> Sequence[str]:
        self.lookups += 1
        if host not in self.answers:
            raise OSError(f"{host} does not resolve")
        return list(self.answers[host])


def verify_signature(secret: str, headers: CIMultiDictProxy[str], body: bytes) -> bool:
    """The Standard Webhooks check in ten lines from the spec, independent of the panel's
    (tests check with the ``standardwebhooks`` package too)."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [item.split(",", 1) for item in headers["webhook-signature"].split(" ")]
    return any(v == "v1" and hmac.compare_digest(s, expected) for v, s in offered)
