"""bench/fleet.py at a tiny size: it completes with zero errors (timings are not asserted),
and its simulated nodes are real agents as far as a command token is concerned."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bench.processes import Server, free_port, running
from tests.conftest import POSTGRES_URL, service_missing
from tests.support.agent_process import AgentProcess, SigningKey, mint_for

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


async def _postgres_reachable() -> None:
    url = make_url(POSTGRES_URL).set(drivername="postgresql")
    try:
        connection = await asyncpg.connect(url.render_as_string(hide_password=False))
    except (OSError, asyncpg.PostgresError) as err:
        service_missing(f"PostgreSQL not reachable: {err}")
    await connection.close()


def test_tiny_fleet_completes_without_errors(tmp_path: Path) -> None:
    asyncio.run(_postgres_reachable())
    figures_path = tmp_path / "fleet.json"
    argv = [
        sys.executable,
        "-m",
        "bench.fleet",
        *("--nodes", "2", "--servers", "10", "--users", "2", "--replicas", "2"),
        *("--baseline-servers", "4", "--seconds", "2", "--concurrency", "4"),
        *("--stats-seconds", "0.5", "--postgres", POSTGRES_URL),
        *("--json", str(figures_path)),
    ]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(figures_path.read_text(encoding="utf-8"))
    assert figures["errors"] == 0, done.stdout
    for phase in figures["phases"].values():
        for operation in phase["operations"].values():
            assert operation["requests"] > 0, done.stdout
        assert all(rss > 0 for rss in phase["rss_mib"])
        assert phase["unfollowed_nodes"] == 0, done.stdout
        # The nodes streamed state changes and resource samples.
        assert phase["events"].get("state", 0) > 0, done.stdout
        assert phase["events"].get("stats", 0) > 0, done.stdout
    takeover = figures["phases"]["full"]["takeover"]
    # The killed replica followed at least one node, every stream it held ended (the harness
    # told its connections from the others'), and every one was followed again.
    assert takeover["nodes_lost"] >= 1, done.stdout
    assert takeover["nodes_lost"] == max(takeover["nodes_per_replica"]), done.stdout
    assert takeover["nodes_back"] == takeover["nodes_lost"], done.stdout
    assert takeover["missing"] == {}, done.stdout


async def _check_tokens(base_url: str, agent: AgentProcess, key: SigningKey) -> None:
    stranger = SigningKey.generate()
    async with aiohttp.ClientSession() as session:

        async def system(token: str | None) -> int:
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            async with session.get(base_url + "/api/v1/system", headers=headers) as answer:
                return answer.status

        genuine = mint_for(agent, key)
        assert await system(None) == 401
        assert await system(mint_for(agent, stranger, header={"kid": key.kid})) == 401
        assert await system(mint_for(agent, key, aud=f"node:{uuid.uuid4()}")) == 401
        assert await system(mint_for(agent, key, exp=int(time.time()) - 60)) == 401
        assert await system(genuine) == 200
        assert await system(genuine) == 401  # single use: the agent's replay cache


def test_simulated_node_verifies_command_tokens_as_the_agent_does(tmp_path: Path) -> None:
    key = SigningKey.generate()
    node_port, control_port = free_port(), free_port()
    agent = AgentProcess(tmp_path, {key.kid: key.public_text})
    agent.port = node_port
    config = {
        "root": str(tmp_path / "nodes"),
        "control_port": control_port,
        "issuer": agent.expected_issuer,
        "kid": key.kid,
        "public_key": key.public_text,
        "nodes": [{"id": str(agent.node_id), "port": node_port}],
    }
    config_path = tmp_path / "nodes.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    argv = [sys.executable, "-m", "bench.fleet_nodes", str(config_path)]
    nodes = Server("nodes", argv, control_port, "/healthz", tmp_path / "nodes.log", REPO)
    with running([nodes]):
        asyncio.run(_check_tokens(f"http://127.0.0.1:{node_port}", agent, key))
