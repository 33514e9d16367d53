"""A control plane on the same host as PostgreSQL may reach it over its Unix socket
(``postgresql://user:pw@/db?host=/var/run/postgresql``, deploy/README.md): every connection
the control plane opens — the engine's, the reads' own pool, ``LISTEN`` — takes that URL, and
a socket that is not there is the database being unavailable (503), not a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import make_url

from control_plane.db.engine import create_engine
from control_plane.db.migrate import upgrade
from control_plane.security.api_keys import new_key
from tests.conftest import POSTGRES_URL, _create_postgres_database, _drop_postgres_database
from tests.integration.control_plane.mfa_support import mfa_panel
from tests.integration.control_plane.test_metrics import metrics_key, scrape
from tests.support.agent_process import free_port
from tests.support.clocks import WallClock

pytestmark = pytest.mark.postgres


def _socket_directory() -> str:
    """Where the test server's socket is: Debian's directory, or the upstream default."""
    port = make_url(POSTGRES_URL).port or 5432
    for directory in ("/var/run/postgresql", "/tmp"):
        if Path(directory, f".s.PGSQL.{port}").exists():
            return directory
    raise AssertionError(f"no PostgreSQL socket for port {port} (deploy/dev/ensure-services.sh)")


def _over_socket(url: str, directory: str) -> str:
    """``url``'s database, role and password, reached through the socket in ``directory``."""
    parsed = make_url(url)._replace(host=None, port=None)
    return parsed.update_query_dict({"host": directory}).render_as_string(hide_password=False)


@pytest.fixture
async def socket_url() -> AsyncIterator[str]:
    url = await _create_postgres_database()
    try:
        yield _over_socket(url, _socket_directory())
    finally:
        await _drop_postgres_database(url)


async def test_the_control_plane_serves_over_the_unix_socket(
    socket_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
) -> None:
    parsed = make_url(socket_url)
    assert parsed.host is None, socket_url
    assert str(parsed.query["host"]).startswith("/"), socket_url
    engine = create_engine(socket_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    panel = await mfa_panel(socket_url, aiohttp_server, aiohttp_client, wall_clock)
    admin = await panel.signed_in("root@example.org", admin=True)
    scraper = await metrics_key(admin, panel, ["read", "metrics"])
    # The authentication read and the list's page on the reads' pool, several times over
    # (a kept page, then the same connections held between reads).
    for _ in range(3):
        listed = await scraper.json("GET", "/api/v1/servers")
        assert listed["data"] == []
    # LISTEN for the other replicas' state changes, on its own connection.
    for _ in range(50):
        seen = await scrape(scraper)
        if seen.value("stellar_state_notifications_listening") == 1:
            break
        await asyncio.sleep(0.1)
    assert seen.value("stellar_state_notifications_listening") == 1
    assert seen.total("stellar_db_pool_connections", pool="reads") >= 1


def _unreachable(url: str, how: str, tmp_path: Path) -> str:
    parsed = make_url(url).difference_update_query(["host"])
    if how == "socket not there":  # PostgreSQL stopped removes its socket
        return _over_socket(url, str(tmp_path / "no-postgres-here"))
    if how == "host name not found":  # RFC 6761: .invalid never resolves
        return parsed._replace(host="postgres.invalid").render_as_string(False)
    # refused: a port nobody listens on, on loopback
    return parsed._replace(host="127.0.0.1", port=free_port()).render_as_string(False)


@pytest.mark.parametrize("how", ["socket not there", "host name not found", "refused"])
async def test_a_database_that_cannot_be_reached_is_503_on_every_path(
    how: str,
    socket_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    wall_clock: WallClock,
    tmp_path: Path,
) -> None:
    """Every way connecting fails is the database being unavailable: the engine's path (a
    sign-in), the reads' own pool (an API key's authentication read) and readiness."""
    panel = await mfa_panel(
        _unreachable(socket_url, how, tmp_path), aiohttp_server, aiohttp_client, wall_clock
    )
    browser = await panel.browser()
    answers = [
        await browser.request(
            "POST",
            "/api/v1/auth/login",
            json={"email": "root@example.org", "password": "whatever it is"},
        ),
        await browser.request(
            "GET", "/api/v1/servers", headers={"Authorization": f"Bearer {new_key()[0]}"}
        ),
    ]
    for response in answers:
        body = await response.json()
        assert response.status == 503, (how, response.url.path, body)
        assert body["error"]["code"] == "database_unavailable"
        assert response.headers["Retry-After"]
    ready = await browser.request("GET", "/readyz")
    assert ready.status == 503, await ready.text()
