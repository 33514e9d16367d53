"""The egress table's lifetime on the agent's Application (a ``cleanup_ctx``).

The table is loaded before the agent restores any game, then again whenever one of the
agent's containers starts or stops, because the ports games publish on the node are part of
it. It stays when the agent stops: the games keep running under dockerd.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Final

import aiodocker
import structlog
from aiohttp import web

from node_agent.docker.errors import DockerUnavailable
from node_agent.docker.events import container_events
from node_agent.docker.network import PublishedPort, published_ports
from node_agent.egress.dns import host_resolvers
from node_agent.egress.nft import EgressError, load_script
from node_agent.egress.policy import EgressPolicy, render_ruleset, table_name
from node_agent.keys import DOCKER, SETTINGS
from node_agent.settings import AgentSettings, ConfigError

log = structlog.get_logger("agent.egress")
# After the event stream breaks (dockerd restarting), wait this long before following again.
RETRY_SECONDS: Final = 1.0


class EgressKeeper:
    """Renders the policy from the settings and what runs now, and loads it."""

    def __init__(self, docker: aiodocker.Docker, settings: AgentSettings) -> None:
        self._docker = docker
        self._settings = settings
        self._published: frozenset[PublishedPort] = frozenset()
        self._lock = asyncio.Lock()

    @property
    def table(self) -> str:
        return table_name(self._settings.docker_network)

    async def policy(self) -> EgressPolicy:
        """The policy for the games running now (the last known ports if dockerd is away)."""
        settings = self._settings
        try:
            self._published = await published_ports(self._docker, settings.docker_network)
        except DockerUnavailable as err:
            log.warning("published ports unknown, keeping the last ones", error=err.message)
        dns = settings.egress_dns
        if dns is None:
            dns = await asyncio.to_thread(host_resolvers)
        return EgressPolicy(
            bridge=settings.docker_network,
            allow=settings.egress_allowances,
            dns_servers=dns,
            published=self._published,
        )

    async def load(self) -> EgressPolicy:
        """Replace the table with the current policy (one transaction); EgressError if not."""
        async with self._lock:
            policy = await self.policy()
            await load_script(render_ruleset(policy))
            return policy

    async def follow(self) -> None:
        """Load again at every start or exit of a managed container, until cancelled."""
        while True:
            since = time.time()
            try:
                # Whatever changed while the stream was down counts too.
                await self.load()
                async for _event in container_events(self._docker, since=since):
                    await self.load()
            except DockerUnavailable as err:
                log.warning("docker events interrupted", error=err.message)
            except EgressError as err:
                log.error("egress policy not updated", table=self.table, error=str(err))
            await asyncio.sleep(RETRY_SECONDS)


async def egress_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the table before any game is restored; a production agent refuses to run without.

    A development agent that cannot load it (no nft, not root) warns and runs on.
    """
    settings = app[SETTINGS]
    keeper = EgressKeeper(app[DOCKER], settings)
    try:
        policy = await keeper.load()
    except EgressError as err:
        if settings.environment == "production":
            raise ConfigError(
                [
                    f"egress policy: {err}. Without it game containers reach the cloud "
                    "metadata service, private networks and this node; install nftables and "
                    "give the agent CAP_NET_ADMIN (deploy/systemd/stellar-agent.service)"
                ]
            ) from err
        log.warning(
            "GAMES ARE NOT FENCED IN: the egress table could not be loaded, so game containers "
            "reach the cloud metadata service, private networks and this node",
            table=keeper.table,
            problem=str(err),
        )
        yield
        return
    log.info(
        "egress policy loaded",
        table=keeper.table,
        bridge=policy.bridge,
        allowed=list(settings.egress_allow),
        dns=[str(server) for server in policy.dns_servers],
        published=len(policy.published),
    )
    task = asyncio.create_task(keeper.follow(), name="egress-policy")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
