"""A root install script that tries to reach the node, the cloud metadata and private hosts.

The same world as ``test_egress.py`` (a bridge of the test's own, a namespace beyond it with
listeners that answer with their name; see ``egress_world.py``): the agent runs a blueprint's
installer as root, which tries every listener with busybox ``nc`` and prints what each
answered. The public host (the positive control) and the one private host the operator
allowed answer; the metadata address, a private host, the bridge's gateway and the node's
own address do not. Then, with the agent stopped and its table deleted, a container on the
same bridge reaches every one of them: it was the egress policy that refused the installer.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiodocker
import aiohttp
import pytest

from node_agent.egress.policy import table_name
from tests.integration.node_agent.egress_world import (
    Bridge,
    Listeners,
    Outside,
    answer_from,
    egress_world_unavailable,
    run,
    start_egress_agent,
)
from tests.integration.node_agent.live_agent import LiveClient
from tests.support.agent_process import AgentProcess, SigningKey
from tests.support.containers import BUSYBOX_IMAGE, FAKE_GAME_IMAGE, remove_container
from tests.support.factories import server_spec

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(bool(reason := egress_world_unavailable()), reason=reason or ""),
]
# Tried first, until it answers (the table is loaded as the agent starts): the control.
PROBE_PUBLIC = """
n=0
until [ "$(nc -w 2 {address} {port})" = public ] || [ $n -ge 20 ]; do n=$((n+1)); sleep 0.5; done
"""
PROBE = 'echo "{name}: $(nc -w 2 {address} {port} 2>&1 | head -n 1)"\n'


@pytest.fixture
def agent(
    tmp_path: Path, bridge: Bridge, outside: Outside, signing_key: SigningKey
) -> Iterator[AgentProcess]:
    process = start_egress_agent(tmp_path / "agent", bridge, outside, signing_key)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def api(agent: AgentProcess, signing_key: SigningKey) -> AsyncIterator[LiveClient]:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as http:
        yield LiveClient(agent, signing_key, http)


@pytest.fixture
async def bystander(docker: aiodocker.Docker, bridge: Bridge) -> AsyncIterator[str]:
    """A plain container on the bridge (not the agent's), for the control without a policy."""
    name = f"steg-bystander-{secrets.token_hex(4)}"
    container = await docker.containers.create(
        {
            "Image": BUSYBOX_IMAGE,
            "Cmd": ["sleep", "600"],
            "User": "1000:1000",
            "HostConfig": {"NetworkMode": bridge.name, "CapDrop": ["ALL"]},
        },
        name=name,
    )
    try:
        await container.start()
        yield name
    finally:
        await remove_container(container)


def probe_script(targets: dict[str, tuple[str, int]]) -> str:
    public_address, public_port = targets["public"]
    script = PROBE_PUBLIC.format(address=public_address, port=public_port)
    for name, (address, port) in targets.items():
        script += PROBE.format(name=name, address=address, port=port)
    return script


async def test_a_root_installer_reaches_the_internet_but_not_the_node_metadata_or_private_hosts(
    docker: aiodocker.Docker,
    bridge: Bridge,
    outside: Outside,
    node_listeners: Listeners,
    agent: AgentProcess,
    api: LiveClient,
    bystander: str,
) -> None:
    far, near = outside.listeners.where, node_listeners.where
    targets = {
        "public": far["public"],
        "allowed": far["allowed"],
        "metadata": far["metadata"],
        "private": far["private"],
        "agent": near["agent"],
        "node": near["node"],
    }
    spec = server_spec(
        allocations=[],
        install={"image": FAKE_GAME_IMAGE, "script": probe_script(targets), "needs_root": True},
    )
    server_id = uuid.UUID(spec["uuid"])
    try:
        async with api.node_events() as events:
            assert (await api.create(spec)).status == 201
            event = await events.wait_for(
                lambda e: e.get("type") == "install" and e["server"] == str(server_id),
                timeout=90,
            )
    finally:
        await api.delete(server_id)

    answers = dict(line.split(": ", 1) for line in event["last_lines"] if ": " in line)
    assert event["success"] is True, event
    # Reached: the internet (the positive control) and what the operator allowed.
    assert answers["public"] == "public", event["last_lines"]
    assert answers["allowed"] == "allowed"
    # Refused: the metadata service, a private host, the node on either side.
    for name in ("metadata", "private", "agent", "node"):
        address = targets[name][0]
        assert answers[name] == f"nc: can't connect to remote host ({address}): No route to host"

    # Without the agent's table the same bridge reaches every one of them.
    agent.stop()
    run("nft", "delete", "table", "inet", table_name(bridge.name))
    for name, (address, port) in targets.items():
        assert await answer_from(docker, bystander, address, port) == name
