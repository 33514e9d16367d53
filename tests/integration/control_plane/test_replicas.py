"""Two control-plane replicas as real processes on one PostgreSQL and Redis, a real agent and
Docker: a node's event stream is followed by exactly one replica; when that one is killed
(SIGKILL) the other takes the stream over within 10 s; state changes reach a console open on
the other replica (recorded by the follower, fanned out by NOTIFY), during the takeover too.
One stopped by SIGTERM (a rolling restart) closes its consoles as going away, writes the
resource history it was folding and gives the stream up at once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shared.command_keys import key_id, public_key_text
from tests.conftest import _create_postgres_database, _drop_postgres_database
from tests.integration.control_plane.replicas import (
    ADMIN,
    elapsed_since,
    fail_with_logs,
    followers,
    metrics_of,
    prepare_database,
    replica_environment,
    running_replicas,
    signed_in,
    signing_key,
)
from tests.support.agent_process import AgentProcess, free_port
from tests.support.control_plane_process import ControlPlaneProcess, RemoteBrowser

pytestmark = [pytest.mark.docker, pytest.mark.slow]
OWNER = "owner@example.org"
FRIEND = "friend@example.org"
CLOSE_PERMISSIONS_CHANGED = 4403
NODE = "node-1"
TAKEOVER_LIMIT_SECONDS = 10.0


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    url = await _create_postgres_database()
    try:
        await prepare_database(url, ADMIN, OWNER, FRIEND)
        yield url
    finally:
        await _drop_postgres_database(url)


async def recorded_state(socket: aiohttp.ClientWebSocketResponse, state: str) -> list[Any]:
    """Read the console until the control plane's ``state`` event says ``state``."""
    async with asyncio.timeout(30):
        async for message in socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                pytest.fail(f"the console ended ({message.type}) before state {state!r}")
            frame = json.loads(message.data)
            if frame.get("event") == "state" and frame["args"][0] == state:
                return list(frame["args"])
    pytest.fail(f"the console never heard state {state!r}")


async def one_follower(replicas: list[ControlPlaneProcess]) -> ControlPlaneProcess:
    """The replica following the node, once one does; never two at once."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = await followers(replicas, NODE)
        assert len(found) <= 1, f"{[r.name for r in found]} all follow {NODE}"
        if found:
            return found[0]
        await asyncio.sleep(0.2)
    fail_with_logs("no replica follows the node", replicas)
    raise AssertionError


async def install_node_and_server(
    admin: RemoteBrowser, tmp_path: Path, private: Any, *, stats_seconds: float = 5.0
) -> tuple[AgentProcess, str]:
    location = await admin.json("POST", "/api/v1/locations", status=201, json={"code": "lab"})
    node = await admin.json(
        "POST",
        "/api/v1/nodes",
        status=201,
        json={"name": NODE, "url": "http://127.0.0.1:9", "location_id": location["id"]},
    )
    agent = AgentProcess(
        tmp_path / "agent",
        {key_id(private.public_key()): public_key_text(private.public_key())},
        node_id=uuid.UUID(node["id"]),
    )
    agent.settings["sftp_port"] = free_port()
    agent.settings["stats_sample_seconds"] = stats_seconds
    agent.start()
    await admin.json("PATCH", f"/api/v1/nodes/{node['id']}", json={"url": agent.base_url})
    blueprint = await admin.json(
        "POST",
        "/api/v1/blueprints",
        status=201,
        json={
            "name": "fake game",
            "images": [{"name": "default", "image": "stellar-test/fake-game:latest"}],
            "startup": "/usr/local/bin/fake-game",
            "stop": {"type": "command", "value": "stop"},
        },
    )
    await admin.json(
        "POST",
        f"/api/v1/nodes/{node['id']}/allocations",
        status=201,
        json={"ip": "127.0.0.1", "port": free_port()},
    )
    owners = await admin.json("GET", "/api/v1/users")
    owner_id = next(u["id"] for u in owners["data"] if u["email"] == OWNER)
    server = await admin.json(
        "POST",
        "/api/v1/servers",
        status=201,
        json={
            "name": "survival",
            "owner_id": owner_id,
            "blueprint_id": blueprint["id"],
            "node_id": node["id"],
            "memory_mib": 512,
            "cpu_percent": 100,
            "disk_mib": 1024,
            "pids_limit": 64,
        },
    )
    return agent, str(server["id"])


@dataclass
class Deployment:
    """Two replicas, a real agent with the node, and a server of OWNER's on it."""

    replicas: list[ControlPlaneProcess]
    agent: AgentProcess
    server_id: str

    @property
    def base(self) -> str:
        return f"/api/v1/servers/{self.server_id}"

    async def holder_and_survivor(self) -> tuple[ControlPlaneProcess, ControlPlaneProcess]:
        holder = await one_follower(self.replicas)
        return holder, next(r for r in self.replicas if r is not holder)

    async def taken_over_by(self, survivor: ControlPlaneProcess, since: float) -> float:
        """Seconds from ``since`` until ``survivor`` follows the node (at most the limit)."""
        while not await followers([survivor], NODE):
            if elapsed_since(since) > TAKEOVER_LIMIT_SECONDS:
                fail_with_logs("the survivor did not take the node over", self.replicas)
            await asyncio.sleep(0.1)
        took = elapsed_since(since)
        assert took < TAKEOVER_LIMIT_SECONDS, f"taken over after {took:.2f} s"
        return took


@asynccontextmanager
async def deployed(
    database_url: str, tmp_path: Path, *, stats_seconds: float = 5.0
) -> AsyncIterator[Deployment]:
    """The deployment, set up by the admin on the first replica; afterwards the server is
    deleted through a replica still running and the agent stopped."""
    key_file, private = signing_key(tmp_path)
    environment = replica_environment(database_url, key_file)
    async with running_replicas(tmp_path, environment) as replicas:
        admin = await signed_in(replicas[0], ADMIN)
        try:
            agent, server_id = await install_node_and_server(
                admin, tmp_path, private, stats_seconds=stats_seconds
            )
        finally:
            await admin.close()
        deployment = Deployment(replicas, agent, server_id)
        try:
            yield deployment
        finally:
            try:
                cleaner = await signed_in(next(r for r in replicas if r.running), ADMIN)
                await cleaner.status_and_body("DELETE", deployment.base)
                await cleaner.close()
            finally:
                agent.stop()


async def sub_user_removed_on_one_replica_loses_console_on_the_other(
    owner: RemoteBrowser, other: ControlPlaneProcess, base: str
) -> None:
    """Closed at once (not at the other replica's next 10 s re-check of the socket)."""
    added = await owner.json(
        "POST", f"{base}/users", status=201, json={"email": FRIEND, "permissions": ["console.read"]}
    )
    friend = await signed_in(other, FRIEND)
    try:
        async with friend.ws_connect(f"{base}/console") as console:
            await console.receive(timeout=10)  # open and relaying
            await owner.json("DELETE", f"{base}/users/{added['id']}", status=204)
            removed_at = time.monotonic()
            message = await console.receive(timeout=5)
            while message.type == aiohttp.WSMsgType.TEXT:
                message = await console.receive(timeout=5)
            # The code the replica closed with (the TCP close that follows may race the
            # client's close reply: close_code is not what is tested here).
            assert message.type == aiohttp.WSMsgType.CLOSE, message
            assert message.data == CLOSE_PERMISSIONS_CHANGED, message
            assert elapsed_since(removed_at) < 5, "closed by the re-check, not at once"
    finally:
        await friend.close()


async def test_the_survivor_takes_a_killed_replicas_node_stream_within_10_s_and_consoles_hear(
    database_url: str, tmp_path: Path
) -> None:
    async with deployed(database_url, tmp_path) as deployment:
        holder, survivor = await deployment.holder_and_survivor()
        base = deployment.base
        on_holder = await signed_in(holder, OWNER)
        on_survivor = on_holder.moved_to(survivor)
        try:
            async with on_survivor.ws_connect(f"{base}/console") as console:
                # Recorded by the holder (its power answer, its event stream); heard on the
                # survivor, which neither follows the node nor served the request.
                await on_holder.json("POST", f"{base}/power", status=202, json={"action": "start"})
                await recorded_state(console, "running")

                await sub_user_removed_on_one_replica_loses_console_on_the_other(
                    on_holder, survivor, base
                )

                holder.kill()
                killed_at = time.monotonic()
                # A change while nobody follows the node: the survivor asks the node to stop;
                # "offline" comes only from the node's stream, which the survivor must take.
                await on_survivor.json("POST", f"{base}/power", status=202, json={"action": "stop"})
                takeover = await deployment.taken_over_by(survivor, killed_at)
                print(f"\nevent-stream takeover after kill -9: {takeover:.2f} s")
                assert (await recorded_state(console, "offline"))[0] == "offline"
            server = await on_survivor.json("GET", base)
            assert server["state"] == "offline"
        finally:
            for browser in (on_holder, on_survivor):
                await browser.close()


async def test_a_frozen_replica_loses_its_node_stream_within_10_s_and_does_not_take_it_back(
    database_url: str, tmp_path: Path
) -> None:
    """SIGSTOP: the holder's sockets stay open, so only the lease's expiry frees the stream."""
    async with deployed(database_url, tmp_path) as deployment:
        replicas = deployment.replicas
        holder, survivor = await deployment.holder_and_survivor()
        holder.freeze()
        try:
            takeover = await deployment.taken_over_by(survivor, time.monotonic())
            print(f"\nevent-stream takeover after SIGSTOP: {takeover:.2f} s")
        finally:
            holder.thaw()
        # Awake again, the old holder finds its lease gone (its gauge was frozen at 1 with
        # it: it drops at the first renewal) and stays a standby.
        deadline = time.monotonic() + 5
        while holder in await followers(replicas, NODE):
            assert time.monotonic() < deadline, "the thawed replica still follows"
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert [r.name for r in await followers(replicas, NODE)] == [survivor.name]
            await asyncio.sleep(0.5)
        text = await metrics_of(holder)
        assert holder.metric(text, "stellar_node_event_stream_leases_lost_total") == 1.0


async def history_samples(browser: RemoteBrowser, base: str) -> int:
    """The samples in the server's recent resource history (10 s buckets)."""
    history = await browser.json("GET", f"{base}/stats/history?range=15m")
    return sum(point["samples"] for point in history["points"])


async def test_a_replica_stopped_by_sigterm_closes_consoles_writes_its_history_and_hands_over(
    database_url: str, tmp_path: Path
) -> None:
    async with deployed(database_url, tmp_path, stats_seconds=0.5) as deployment:
        holder, survivor = await deployment.holder_and_survivor()
        base = deployment.base
        on_holder = await signed_in(holder, OWNER)
        on_survivor = on_holder.moved_to(survivor)
        try:
            async with on_holder.ws_connect(f"{base}/console") as console:
                await on_holder.json("POST", f"{base}/power", status=202, json={"action": "start"})
                await recorded_state(console, "running")
                await asyncio.sleep(2)  # samples every 0.5 s, folded by the holder
                await on_holder.json("POST", f"{base}/power", status=202, json={"action": "stop"})
                await recorded_state(console, "offline")
                # Nothing is sampled now: the holder's last bucket stays open, unwritten,
                # until its stream ends.
                before = await history_samples(on_survivor, base)
                stopping = asyncio.create_task(asyncio.to_thread(holder.stop))
                stopped_at = time.monotonic()
                message = await console.receive(timeout=5)
                while message.type == aiohttp.WSMsgType.TEXT:
                    message = await console.receive(timeout=5)
                assert message.type == aiohttp.WSMsgType.CLOSE, message
                assert message.data == aiohttp.WSCloseCode.GOING_AWAY, message
                code = await stopping
            assert code == 0, holder.log_text()
            assert elapsed_since(stopped_at) < 5, "the stop waited for the open console"
            after = await history_samples(on_survivor, base)
            assert after > before, "the stopped replica's last history bucket was lost"
            assert "leases lost" not in holder.log_text()
            takeover = await deployment.taken_over_by(survivor, stopped_at)
            print(f"\nevent-stream takeover after SIGTERM: {takeover:.2f} s")
        finally:
            for browser in (on_holder, on_survivor):
                await browser.close()
