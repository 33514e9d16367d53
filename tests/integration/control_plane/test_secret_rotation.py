"""Secret rotation: a new auth secret ends every session; the command-signing key rotates
without downtime (agents trust old and new, then the old one is retired)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.app import create_app
from control_plane.db.models import Node
from control_plane.nodes.client import NodeClient
from control_plane.security.command_signing import CommandSigner
from control_plane.settings import load_settings
from shared.errors import UpstreamFailed
from tests.integration.control_plane.conftest import AUTH_SECRET, UNLIMITED
from tests.support.agent_process import AgentProcess, SigningKey
from tests.support.panel import Panel

ROTATED_SECRET = "Zr8Qw2Lx5Vc9Nb3Mk7Jh1Gf4Ds6Ap0Oi2Uy8Tt5Re"


async def test_a_new_auth_secret_logs_everyone_out(
    engine: AsyncEngine,
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    def app(secret: str) -> web.Application:
        return create_app(
            load_settings(
                {
                    "STELLAR_DATABASE_URL": database_url,
                    "STELLAR_AUTH_SECRET": secret,
                    "STELLAR_BCRYPT_COST": "10",
                    "STELLAR_RATE_LIMITS": UNLIMITED,
                }
            ),
            background_jobs=False,
        )

    before = Panel(await aiohttp_server(app(AUTH_SECRET)), aiohttp_client)
    browser = await before.signed_in("user@example.org")
    cookie = browser.client.session.cookie_jar.filter_cookies(browser.client.make_url("/"))
    token = cookie["stellar_session"].value

    after = Panel(await aiohttp_server(app(ROTATED_SECRET)), aiohttp_client)
    returning = await after.browser()
    returning.client.session.cookie_jar.update_cookies({"stellar_session": token})
    assert (await returning.request("GET", "/api/v1/auth/session")).status == 401
    # The password still works: rotating the secret logs people out, it does not lock them out.
    await returning.login("user@example.org")


@pytest.mark.slow
async def test_command_signing_key_rotates_without_downtime(tmp_path: Path) -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    agent = AgentProcess(tmp_path / "agent", {old.kid: old.public_text})
    agent.start()
    node = Node(id=agent.node_id, name="node-1", url=agent.base_url)
    try:
        async with aiohttp.ClientSession() as http:

            def client(key: SigningKey) -> NodeClient:
                return NodeClient(
                    http, CommandSigner(key.private_key, issuer="stellar-cp"), timeout=10
                )

            # 1. Today: the control plane signs with the old key.
            await client(old).system_info(node)
            with pytest.raises(UpstreamFailed, match=new.kid):
                await client(new).system_info(node)
            # 2. Distribute the new public key to the agent, next to the old one.
            agent.stop()
            agent.trusted_keys = {old.kid: old.public_text, new.kid: new.public_text}
            agent.write_config()
            agent.start()
            node.url = agent.base_url
            await client(old).system_info(node)  # replicas not yet switched keep working
            await client(new).system_info(node)  # switched ones too
            # 3. Every replica signs with the new key: retire the old one on the agent.
            agent.stop()
            agent.trusted_keys = {new.kid: new.public_text}
            agent.write_config()
            agent.start()
            node.url = agent.base_url
            await client(new).system_info(node)
            with pytest.raises(UpstreamFailed, match=old.kid):
                await client(old).system_info(node)
    finally:
        agent.stop()
