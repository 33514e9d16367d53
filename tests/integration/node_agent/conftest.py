"""Fixtures that run real agent processes; every one is stopped at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.agent_process import AgentFactory, AgentProcess, SigningKey


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    """The control plane's key: every agent in this module trusts it."""
    return SigningKey.generate()


def _started(root: Path, key: SigningKey) -> AgentProcess:
    agent = AgentProcess(root, {key.kid: key.public_text})
    agent.start()
    return agent


@pytest.fixture(scope="module")
def agent(
    tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey
) -> Iterator[AgentProcess]:
    """One agent shared by the tests of a module (tests tell their requests apart by id)."""
    process = _started(tmp_path_factory.mktemp("agent-a"), signing_key)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def other_agent(
    tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey
) -> Iterator[AgentProcess]:
    """A second node that trusts the same key as ``agent``."""
    process = _started(tmp_path_factory.mktemp("agent-b"), signing_key)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def agent_factory(tmp_path: Path, signing_key: SigningKey) -> Iterator[AgentFactory]:
    """Start agents of this test's own (restart, kill, ...); all are stopped at teardown."""
    started: list[AgentProcess] = []

    def make() -> AgentProcess:
        process = _started(tmp_path / f"agent-{len(started)}", signing_key)
        started.append(process)
        return process

    try:
        yield make
    finally:
        for process in started:
            process.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that opens a new connection per request, so a restarted agent is no surprise."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        yield session
