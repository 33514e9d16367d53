"""A node agent that takes its time: for testing what the control plane does while a node is
slow or refuses, without Docker.

It serves the power and spec endpoints of the node API table (``shared/node_endpoints.py``)
and checks each command token with the agent's own verifier (signature, node, method,
path, body hash, single use). It answers a power action after ``delay`` seconds with the
state asked for, or refuses it with ``refusal`` (a 409 in the common error shape). A spec
(sent before each start) is taken at once, or held until the test lets it through, or
refused with ``spec_refusal``; the node keeps the newest of those it took, as the agent does.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.command_keys import key_id
from shared.errors import Conflict, Unauthenticated
from shared.node_endpoints import SERVER_POWER, SERVER_UPDATE
from shared.protocol import CommandRejected, CommandVerifier
from shared.server_spec import DesiredPower, PowerAction, ServerSpec, ServerState, ServerStatus

_STATE_AFTER: dict[str, ServerState] = {
    "start": "running",
    "restart": "running",
    "stop": "offline",
    "kill": "offline",
}


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
    # Specs taken (one before each start or restart), and the one each server has by the
    # agent's rule: the highest revision given (``ServerSpec.is_older_than``).
    taken: list[ServerSpec] = field(default_factory=list)
    kept: dict[uuid.UUID, ServerSpec] = field(default_factory=dict)
    # While ``holding``, each spec that comes waits in ``held`` until let through.
    holding: bool = False
    held: list[tuple[ServerSpec, asyncio.Event]] = field(default_factory=list)
    # Set: each spec is refused with this message (a 409, as the agent refuses one).
    spec_refusal: str | None = None

    async def let_through(self) -> None:
        """Stop holding specs and let the held ones through one at a time, the newest first,
        each taken before the next goes: the older ones arrive late, as over a network
        that held them up."""
        self.holding = False
        for spec, gate in sorted(self.held, key=lambda held: -held[0].revision):
            gate.set()
            while not any(taken is spec for taken in self.taken):
                await asyncio.sleep(0.01)

    def app(self) -> web.Application:
        verifier = CommandVerifier(
            trusted_keys={key_id(self.trusted): self.trusted},
            issuer=self.issuer,
            node_id=self.node_id,
            replay_cache=_OnceCache(),
        )

        async def verified(request: web.Request, action: str) -> bytes:
            body = await request.read()
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            try:
                claims = verifier.verify(
                    token, method=request.method, path=request.raw_path, body=body
                )
            except CommandRejected as err:
                raise web.HTTPUnauthorized(text=Unauthenticated(err.reason).message) from err
            if claims.act != action:
                raise web.HTTPUnauthorized(text="wrong act")
            return body

        def answer(
            request: web.Request, state: ServerState, desired: DesiredPower, revision: int = 0
        ) -> web.Response:
            status = ServerStatus(
                uuid=uuid.UUID(request.match_info["server_id"]),
                state=state,
                desired_power=desired,
                install="none",
                install_exit_code=None,
                stopping=False,
                container=None,
                spec_revision=revision,
            )
            return web.json_response(text=status.model_dump_json())

        async def power(request: web.Request) -> web.Response:
            action = PowerAction.model_validate_json(await verified(request, SERVER_POWER.action))
            self.waiting += 1
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.waiting -= 1
            self.answered.append(action.action)
            if self.refusal is not None:
                error = Conflict(self.refusal)
                return web.json_response(error.body(), status=error.status)
            desired: DesiredPower = (
                "running" if action.action in ("start", "restart") else "stopped"
            )
            return answer(request, _STATE_AFTER[action.action], desired)

        async def spec(request: web.Request) -> web.Response:
            given = ServerSpec.model_validate_json(await verified(request, SERVER_UPDATE.action))
            if self.holding:
                gate = asyncio.Event()
                self.held.append((given, gate))
                await gate.wait()
            if self.spec_refusal is not None:
                error = Conflict(self.spec_refusal)
                return web.json_response(error.body(), status=error.status)
            self.taken.append(given)
            kept = self.kept.get(given.uuid)
            if kept is None or not given.is_older_than(kept):
                self.kept[given.uuid] = given
            return answer(request, "offline", "stopped", self.kept[given.uuid].revision)

        app = web.Application()
        app.router.add_route(SERVER_POWER.method, SERVER_POWER.path, power)
        app.router.add_route(SERVER_UPDATE.method, SERVER_UPDATE.path, spec)
        return app
