"""A blueprint's image names the registry dockerd pulls it from: an egg author's choice.

dockerd pulls from the host's own network, outside the games' egress policy: an image named
``127.0.0.1:PORT/x`` (or a registry whose token ``realm`` points anywhere) made it send GET
requests to the node's loopback services or the cloud metadata address, and the body of the
answer came back in the pull's error, to whoever created, updated or reinstalled the server.
A fake "internal service" on the node's loopback plays the target; the agent must not let
dockerd reach it unless the operator listed it in ``image_registries``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port

from tests.integration.node_agent.live_agent import LiveClient, LiveServers
from tests.support.containers import FAKE_GAME_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]

SECRET = "internal-service-secret-3f1c"


@dataclass
class InternalService:
    """An HTTP service on the node's loopback that answers every GET with a secret."""

    port: int
    requests: list[str] = field(default_factory=list)

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
async def internal() -> AsyncIterator[InternalService]:
    service = InternalService(unused_port())

    async def answer(request: web.Request) -> web.Response:
        service.requests.append(request.path_qs)
        return web.Response(status=403, text=f"{SECRET} {request.path_qs}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", service.port).start()
    try:
        yield service
    finally:
        await runner.cleanup()


def _refused(body: dict[str, object], service: InternalService) -> None:
    message = str(body)
    assert SECRET not in message
    assert f"registry {service.registry} is not one this node pulls from" in message


async def test_a_game_image_on_a_registry_the_node_does_not_pull_from_is_refused_unpulled(
    servers: LiveServers, api: LiveClient, internal: InternalService
) -> None:
    spec = servers.spec(image=f"{internal.registry}/meta-data/iam:latest")

    answer = await api.create(spec)

    assert answer.status == 400, answer.body
    _refused(answer.body, internal)
    assert internal.requests == []
    assert (await api.read(uuid.UUID(spec["uuid"]))).status == 404


async def test_an_install_image_on_such_a_registry_is_refused_at_create_and_reinstall(
    servers: LiveServers, api: LiveClient, internal: InternalService
) -> None:
    install = {"image": f"{internal.registry}/x:1", "script": "true"}
    answer = await api.create(servers.spec(install=install))
    assert answer.status == 400, answer.body
    _refused(answer.body, internal)

    # A server created without it, whose spec then names it (an egg imported again).
    server_id = await servers.create()
    changed = servers.specs[server_id] | {"install": install}
    answer = await api.send(
        "PUT", server_id, "server.update", suffix="/spec", body=api.encode(changed)
    )
    assert answer.status == 400, answer.body
    _refused(answer.body, internal)
    assert internal.requests == []


async def test_an_image_already_on_the_node_runs_whatever_its_name(
    servers: LiveServers, api: LiveClient
) -> None:
    # Locally built images are never pulled, so the list does not apply to them.
    server_id = await servers.create(image=FAKE_GAME_IMAGE)
    assert (await api.read(server_id)).status == 200
