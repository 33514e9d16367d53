"""A node agent that takes its time: for testing what the control plane does while a node is
slow or refuses, without Docker.

It serves the power endpoint of the node API table (``shared/node_endpoints.py``) and checks
each command token with the agent's own verifier (signature, node, method, path, body hash,
single use); it answers after ``delay`` seconds with the state asked for, or refuses with
``refusal`` (a 409 in the common error shape).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.command_keys import key_id
from shared.errors import Conflict, Unauthenticated
from shared.node_endpoints import SERVER_POWER
from shared.protocol import CommandRejected, CommandVerifier
from shared.server_spec import PowerAction, ServerStatus

_STATE_AFTER = {"start": "running", "restart": "running", "stop": "offline", "kill": "offline"}


class _OnceCache:
    def __init__(self) -> None:
        self._seen: set[str] = set()

    def remember(self, jti: str, expires_at: int) -> bool:
        if jti in self._seen:
            return False
        self._seen.add(jti)
        return True


@dataclass
class SlowNode:
    node_id: uuid.UUID
    trusted: Ed25519PublicKey
    issuer: str
    delay: float = 10.0
    refusal: str | None = None
    # Power actions answered (or refused), and those under way now.
    answered: list[str] = field(default_factory=list)
    waiting: int = 0

    def app(self) -> web.Application:
        verifier = CommandVerifier(
            trusted_keys={key_id(self.trusted): self.trusted},
            issuer=self.issuer,
            node_id=self.node_id,
            replay_cache=_OnceCache(),
        )

        async def power(request: web.Request) -> web.Response:
            body = await request.read()
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            try:
                claims = verifier.verify(
                    token, method=request.method, path=request.raw_path, body=body
                )
            except CommandRejected as err:
                raise web.HTTPUnauthorized(text=Unauthenticated(err.reason).message) from err
            if claims.act != SERVER_POWER.action:
                raise web.HTTPUnauthorized(text="wrong act")
            action = PowerAction.model_validate_json(body)
            self.waiting += 1
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.waiting -= 1
            self.answered.append(action.action)
            if self.refusal is not None:
                error = Conflict(self.refusal)
                return web.json_response(error.body(), status=error.status)
            status = ServerStatus(
                uuid=uuid.UUID(request.match_info["server_id"]),
                state=_STATE_AFTER[action.action],
                desired_power="running" if action.action in ("start", "restart") else "stopped",
                install="none",
                install_exit_code=None,
                stopping=False,
                container=None,
            )
            return web.json_response(text=status.model_dump_json())

        app = web.Application()
        app.router.add_route(SERVER_POWER.method, SERVER_POWER.path, power)
        return app
