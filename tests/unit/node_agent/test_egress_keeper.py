"""When the egress table cannot be loaded: a production agent refuses to start, others warn."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from node_agent.egress import nft
from node_agent.egress.keeper import egress_ctx
from node_agent.keys import DOCKER, SETTINGS
from node_agent.settings import AgentSettings, ConfigError
from shared.command_keys import public_key_text
from tests.support.agent_process import SigningKey


@pytest.fixture
async def docker_nowhere(tmp_path: Path) -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker(url=f"unix://{tmp_path}/no-docker.sock")
    try:
        yield client
    finally:
        await client.close()


def app_for(environment: str, docker: aiodocker.Docker, tmp_path: Path) -> web.Application:
    key = SigningKey.generate()
    app = web.Application()
    app[SETTINGS] = AgentSettings.model_validate(
        {
            "node_id": str(uuid.uuid4()),
            "data_dir": str(tmp_path),
            "trusted_keys": {key.kid: public_key_text(key.public_key)},
            "environment": environment,
            "egress_dns": ["10.0.0.2"],
        }
    )
    app[DOCKER] = docker
    return app


@pytest.fixture(autouse=True)
def nft_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nft, "NFT_COMMAND", ("nft-is-not-here", "-f", "-"))


async def test_a_production_agent_refuses_to_start_without_its_egress_table(
    docker_nowhere: aiodocker.Docker, tmp_path: Path
) -> None:
    context = egress_ctx(app_for("production", docker_nowhere, tmp_path))
    with pytest.raises(ConfigError) as refused:
        await anext(context)
    (problem,) = refused.value.problems
    assert "nft is not installed" in problem
    assert "metadata" in problem
    assert "CAP_NET_ADMIN" in problem


async def test_a_development_agent_warns_loudly_and_runs_on(
    docker_nowhere: aiodocker.Docker, tmp_path: Path
) -> None:
    context = egress_ctx(app_for("development", docker_nowhere, tmp_path))
    with capture_logs() as logs:
        await anext(context)
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert any(entry["event"].startswith("GAMES ARE NOT FENCED IN") for entry in warnings)
    assert any("nft is not installed" in entry.get("problem", "") for entry in warnings)
    with pytest.raises(StopAsyncIteration):
        await anext(context)
