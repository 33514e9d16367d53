"""An attacker inside a game container: what can it reach on the node and around it?

A real agent (its own bridge network ``steg-<tag>``, so nothing else on this Docker engine is
touched) runs two games, A and B, created and started through its signed API. The test plays
the attacker with ``docker exec`` in A (busybox ``nc``, as the game's own user) against real
listeners that answer with their name (``egress_world.py`` builds the world around the node)::

    A ──▶ bridge steg-<tag> ──▶ node ──veth──▶ namespace "outside" (the internet, 198.18.0.0/15)
          gateway G:                 198.18.n.1       198.18.n.2          a public host
            "agent" (the agent's     "node" (the      169.254.169.254:80  the cloud metadata
            port stands in here)     node's address)  10.77.x.y           a host on a private net

Only traffic from the test bridge's subnet is routed to the metadata and private addresses
(an ``ip rule`` with its own routing table), so the host's routes, and any real metadata
service, are untouched. Every "unreachable" has its positive control: the same listener is
reached once the agent's egress table is deleted, or, for B's container, from the host.
Namespaces, links, rules, listeners, containers, the network and the table are removed at
teardown, also when the test fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiodocker
import aiohttp
import pytest

from node_agent.egress.policy import table_name
from tests.integration.node_agent.egress_world import (
    DNS_ANSWER,
    GAME_GREETING,
    Bridge,
    Games,
    Listeners,
    Outside,
    answer_from,
    answer_from_host,
    answer_from_outside,
    container_address,
    egress_world_unavailable,
    eventually,
    lookup,
    resolver_user,
    run,
    start_egress_agent,
)
from tests.support.agent_process import AgentProcess, SigningKey, free_port
from tests.support.containers import SignedAgentClient, remove_container

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(bool(reason := egress_world_unavailable()), reason=reason or ""),
]


@pytest.fixture
def agent(
    tmp_path: Path, bridge: Bridge, outside: Outside, signing_key: SigningKey
) -> Iterator[AgentProcess]:
    """The agent on the test's bridge; one private host and one resolver are allowed."""
    process = start_egress_agent(tmp_path / "agent", bridge, outside, signing_key)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def api(agent: AgentProcess, signing_key: SigningKey) -> AsyncIterator[SignedAgentClient]:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as http:
        yield SignedAgentClient(agent, signing_key, http)


@pytest.fixture
async def games(api: SignedAgentClient) -> AsyncIterator[Games]:
    handed_out = Games(api)
    try:
        yield handed_out
    finally:
        for server_id in handed_out.created:
            with contextlib.suppress(aiohttp.ClientError):
                await api.delete(server_id)


async def test_a_game_reaches_the_internet_and_published_ports_but_not_the_node_or_private_nets(
    docker: aiodocker.Docker,
    bridge: Bridge,
    outside: Outside,
    node_listeners: Listeners,
    agent: AgentProcess,
    games: Games,
) -> None:
    published = free_port()
    victim = await games.start(
        [
            {"ip": bridge.gateway, "port": published, "protocols": ["tcp"]},
            {"ip": outside.node_address, "port": published, "protocols": ["tcp"]},
        ]
    )
    attacker = await games.start([])
    victim_address = await container_address(docker, victim, bridge)
    far = outside.listeners.where
    near = node_listeners.where

    async def answer(address: str, port: int) -> str:
        return await answer_from(docker, attacker, address, port)

    async def answers(name: str, address: str, port: int) -> bool:
        return await answer(address, port) == name

    # Allowed: the internet, another game through its published port on the node, and the
    # one private host and port the operator listed in egress_allow.
    await eventually(lambda: answers("public", *far["public"]))
    assert await answer(*far["allowed"]) == "allowed"
    await eventually(lambda: answers(GAME_GREETING, bridge.gateway, published))
    assert answer_from_outside(outside, outside.node_address, published) == GAME_GREETING

    # Refused: the metadata service, a private network, the node itself, the other game.
    blocked = {
        "metadata": far["metadata"],
        "private": far["private"],
        "agent": near["agent"],
        "node": near["node"],
    }
    for name, (address, port) in blocked.items():
        assert name not in await answer(address, port), f"the game reached {name}"
    assert GAME_GREETING not in await answer(victim_address, published)

    # The table outlives the agent, as the games do. (Stopped, the agent also stops
    # rewriting it at every container event, which would race the deletion below.)
    agent.stop()
    assert "metadata" not in await answer(*far["metadata"])

    # Positive controls: the other game answers the host directly; without the agent's
    # table every other listener answers the game, so it was the policy that refused them.
    assert await answer_from_host(victim_address, published) == GAME_GREETING
    run("nft", "delete", "table", "inet", table_name(bridge.name))
    for name, (address, port) in blocked.items():
        assert await answer(address, port) == name, f"{name} not reachable without the policy"


@pytest.fixture
async def plain_containers(docker: aiodocker.Docker) -> AsyncIterator[list[str]]:
    """Names of containers a test made itself (not through the agent); removed at teardown."""
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            await remove_container(docker.containers.container(name))


async def test_games_resolve_names_through_a_private_resolver_the_agent_was_given(
    docker: aiodocker.Docker,
    bridge: Bridge,
    outside: Outside,
    agent: AgentProcess,
    plain_containers: list[str],
) -> None:
    # dockerd forwards the query from the container's namespace: through the bridge, to a
    # private address, which only egress_dns lets through.
    given = await resolver_user(docker, bridge, outside.resolver, plain_containers)
    other = await resolver_user(docker, bridge, outside.other_resolver, plain_containers)
    assert DNS_ANSWER in await lookup(docker, given)
    assert DNS_ANSWER not in await lookup(docker, other)

    # Positive control: without the agent's table the other resolver answers too.
    agent.stop()
    run("nft", "delete", "table", "inet", table_name(bridge.name))
    assert DNS_ANSWER in await lookup(docker, other)
