"""The control plane's pin against a real agent serving TLS: the right certificate works, an
impostor on the same address is refused before it sees the command, unpinned https is refused."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from control_plane.db.models import Node
from control_plane.nodes.client import NodeClient
from control_plane.nodes.tls import (
    CertificateMismatch,
    NodeNotPinned,
    mismatch_error,
    node_ssl,
)
from control_plane.security.command_signing import CommandSigner
from tests.integration.deploy.support import TlsAgent, connections_to_port_closed
from tests.support.agent_process import SYSTEM_PATH, AgentProcess, SigningKey, mint_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey) -> Iterator[TlsAgent]:
    """One genuine agent for the tests that leave it running."""
    process = TlsAgent(tmp_path_factory.mktemp("genuine"), signing_key)
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # Pooled connections, not force_close: closing the session aborts the pooled TLS
    # connections at once, where a force-closed one is still shutting down in the background
    # when the test's event loop closes (uvloop then fails the teardown with EBUSY).
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def _command_headers(agent: TlsAgent, key: SigningKey) -> dict[str, str]:
    # A token for this node id: AgentProcess only lends its audience and issuer here.
    target = AgentProcess(agent.root, {key.kid: key.public_text}, node_id=agent.node_id)
    return {"Authorization": f"Bearer {mint_for(target, key)}"}


async def test_a_client_pinned_to_the_agents_fingerprint_sends_it_signed_commands(
    agent: TlsAgent, signing_key: SigningKey, http: aiohttp.ClientSession
) -> None:
    ssl = node_ssl("node-1", agent.url, agent.identity.fingerprint)

    async with http.get(
        f"{agent.url}{SYSTEM_PATH}", ssl=ssl, headers=_command_headers(agent, signing_key)
    ) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["node_id"] == str(agent.node_id)


# aiohttp drops the TLS transport it refused for a wrong fingerprint without waiting for it to
# close; when the garbage collector gets there first it warns. Known, harmless, not ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_an_impostor_on_the_same_address_is_refused_before_it_sees_the_command(
    signing_key: SigningKey, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    agent = TlsAgent(tmp_path / "genuine", signing_key)
    agent.start()
    pinned = agent.identity.fingerprint
    agent.stop()
    # Same host, same port, same node id and keys; only the certificate is its own.
    impostor = TlsAgent(
        tmp_path / "impostor", signing_key, host=agent.host, port=agent.port, node_id=agent.node_id
    )
    impostor.start()
    try:
        with pytest.raises(aiohttp.ServerFingerprintMismatch) as caught:
            await http.get(
                f"{agent.url}{SYSTEM_PATH}",
                ssl=node_ssl("node-1", agent.url, pinned),
                headers=_command_headers(agent, signing_key),
            )

        error = mismatch_error("node-1", caught.value)
        assert isinstance(error, CertificateMismatch)
        assert error.status == 502
        assert str(error).startswith(
            "node 'node-1' presented a certificate that does not match its pinned fingerprint"
        )
        assert error.expected == pinned
        assert error.got == impostor.identity.fingerprint
        assert impostor.requests_seen(SYSTEM_PATH) == []
        # aiohttp closes the refused TLS connection gracefully (close_notify) in the background;
        # let that finish while the impostor still answers, or the socket outlives the test.
        await connections_to_port_closed(impostor.port)
        gc.collect()  # collect the dropped transport here, under this test's warning filter
    finally:
        impostor.stop()


async def test_https_without_a_pin_is_refused(agent: TlsAgent, http: aiohttp.ClientSession) -> None:
    with pytest.raises(NodeNotPinned, match="has no pinned TLS fingerprint"):
        node_ssl("node-1", agent.url, None)
    # And the default (CA-verified) client does not fall back to trusting the agent's own cert.
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await http.get(f"{agent.url}/healthz")


async def test_plain_http_to_a_tls_agent_gets_no_answer(
    agent: TlsAgent, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.ClientError):
        async with http.get(f"http://{agent.host}:{agent.port}/healthz") as response:
            await response.read()


# aiohttp drops the TLS transport it refused for a wrong fingerprint without waiting for it to
# close; when the garbage collector gets there first it warns. Known, harmless, not ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_the_control_planes_node_client_pins_and_refuses_an_impostor(
    signing_key: SigningKey, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The same, through NodeClient: the one place the control plane talks to agents."""
    signer = CommandSigner(signing_key.private_key, issuer="stellar-cp")
    genuine = TlsAgent(tmp_path / "genuine", signing_key)
    genuine.start()
    node = Node(
        id=genuine.node_id,
        name="node-1",
        url=genuine.url,
        tls_fingerprint=genuine.identity.fingerprint,
    )
    try:
        # Its own session: the impostor below must get a new connection, not this pooled one.
        async with aiohttp.ClientSession() as first:
            first_client = NodeClient(first, signer, timeout=10, allow_plain_http=False)
            info = await first_client.system_info(node)
        assert info.node_id == genuine.node_id
    finally:
        genuine.stop()
    client = NodeClient(http, signer, timeout=10, allow_plain_http=False)
    impostor = TlsAgent(
        tmp_path / "impostor",
        signing_key,
        host=genuine.host,
        port=genuine.port,
        node_id=genuine.node_id,
    )
    impostor.start()
    try:
        with pytest.raises(CertificateMismatch):
            await client.system_info(node)
        assert impostor.requests_seen(SYSTEM_PATH) == []
        unpinned = Node(id=genuine.node_id, name="node-1", url=genuine.url, tls_fingerprint=None)
        with pytest.raises(NodeNotPinned):
            await client.system_info(unpinned)
        await connections_to_port_closed(impostor.port)  # the refused TLS connection, closing
        gc.collect()  # and collect it here, under this test's warning filter, not in the next
    finally:
        impostor.stop()
