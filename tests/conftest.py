"""Fixtures shared by the whole suite: databases (SQLite and the real PostgreSQL) and services.

``make test`` (and so CI) sets STELLAR_REQUIRE_SERVICES=1 after starting PostgreSQL, Redis and
Docker and installing the programs tests run (deploy/dev/ensure-services.sh): then a missing
service or program fails the tests that need it instead of skipping them. Only a missing
privilege (not root) still skips.

A module marked ``docker`` (``pytestmark``) gets ``docker_images`` before any fixture of its
own: the engine reachable and the local test images built, once a run.

Every asynchronous test and fixture runs on uvloop, the event loop both services serve on
(``shared.http_server.run_app``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import aiodocker
import asyncpg
import pytest
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import create_engine
from control_plane.db.migrate import upgrade
from node_agent.docker.network import AGENT_NETWORK
from tests.support.agent_process import SigningKey
from tests.support.containers import build_test_images, docker_cli
from tests.support.serving import ApiTestServer

POSTGRES_URL = os.environ.get(
    "STELLAR_TEST_POSTGRES_URL", "postgresql://stellar:stellar@127.0.0.1:5432/stellar_test"
)
REQUIRE_SERVICES = os.environ.get("STELLAR_REQUIRE_SERVICES") == "1" or bool(os.environ.get("CI"))


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The loop of every asynchronous test: uvloop's, as in the services (one factory, so the
    tests' names do not change)."""
    return {"uvloop": uvloop.new_event_loop}


def service_missing(reason: str) -> None:
    """Fail when the run promised the service (make test, CI); skip otherwise."""
    if REQUIRE_SERVICES:
        pytest.fail(reason)
    pytest.skip(reason)


def require_tool(program: str, package: str) -> None:
    """A program a test runs: ``service_missing`` unless it is on PATH."""
    if shutil.which(program) is None:
        service_missing(
            f"{program} is not installed (apt-get install {package}; "
            "deploy/dev/ensure-services.sh docker postgres redis test-tools installs it)"
        )


async def _create_postgres_database() -> str:
    name = f"stellar_t_{secrets.token_hex(6)}"
    admin_url = make_url(POSTGRES_URL)
    try:
        connection = await asyncpg.connect(admin_url.render_as_string(hide_password=False))
    except (OSError, asyncpg.PostgresError) as err:
        service_missing(f"PostgreSQL not reachable at {admin_url.host}:{admin_url.port}: {err}")
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return admin_url.set(database=name).render_as_string(hide_password=False)


async def _drop_postgres_database(url: str) -> None:
    """Drop a test database; a background worker still in it gets a few moments to leave."""
    name = make_url(url).database
    connection = await asyncpg.connect(make_url(POSTGRES_URL).render_as_string(hide_password=False))
    try:
        for attempt in range(20):
            try:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
                if attempt == 19:
                    raise
                await asyncio.sleep(0.25)
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database of each kind: a SQLite file, and a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'stellar.db'}"
        return
    url = await _create_postgres_database()
    try:
        yield url
    finally:
        await _drop_postgres_database(url)


# Migrated once per run and copied for each test (migrating a new database costs 0.5-0.7 s,
# over a thousand times a run): the SQLite file, and the PostgreSQL template database.
_MIGRATED: dict[str, str] = {}


async def _migrated_template(kind: str) -> str | None:
    """Where the run's migrated copy of ``kind`` lives (made at first use); None if it
    could not be made — the test then migrates its own database, as before."""
    if kind in _MIGRATED:
        return _MIGRATED[kind] or None
    _MIGRATED[kind] = ""
    if kind == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="stellar-template-")) / "stellar.db"
        url = f"sqlite:///{path}"
        place = str(path)
    else:
        url = await _create_postgres_database()
        place = str(make_url(url).database)
    template = create_engine(url)
    try:
        await upgrade(template)
    finally:
        await template.dispose()
    _MIGRATED[kind] = place
    return place


async def _copy_migrated(database_url: str) -> None:
    """Make ``database_url`` (new and empty) a copy of the run's migrated database."""
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    template = await _migrated_template(kind)
    if template is None:
        return
    if kind == "sqlite":
        target = Path(str(make_url(database_url).database))
        if target.exists():  # made by something else already: it migrates as it was
            return
        source, copy = sqlite3.connect(template), sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        return
    name = make_url(database_url).database
    admin = await asyncpg.connect(make_url(POSTGRES_URL).render_as_string(hide_password=False))
    try:
        await admin.execute(f'DROP DATABASE "{name}"')
    except asyncpg.ObjectInUseError:  # something is in it already: it migrates as it was
        await admin.close()
        return
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    except asyncpg.PostgresError:
        await admin.execute(f'CREATE DATABASE "{name}"')  # empty again: it migrates as it was
    finally:
        await admin.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run's PostgreSQL template goes with it (the SQLite one is a temporary file's)."""
    template = _MIGRATED.get("postgresql")
    if template:
        url = make_url(POSTGRES_URL).set(database=template).render_as_string(hide_password=False)
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            asyncio.run(_drop_postgres_database(url))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated database of each kind (a copy of the run's migrated one; the
    upgrade that follows finds it at head, and is the check that it is)."""
    await _copy_migrated(database_url)
    engine = create_engine(database_url)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def aiohttp_server() -> AsyncIterator[AiohttpServer]:
    """pytest-aiohttp's fixture, serving each app on the runner the services run on
    (``shared.http_server``), so that the HTTP parser's refusals are the real ones."""
    servers: list[TestServer] = []

    async def serve(
        app: web.Application, *, host: str = "127.0.0.1", port: int | None = None, **kwargs: Any
    ) -> TestServer:
        server = ApiTestServer(app, host=host, port=port)
        await server.start_server(**kwargs)
        servers.append(server)
        return server

    yield serve
    while servers:
        await servers.pop().close()


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    """The control plane's command-signing key: every agent a module starts trusts it."""
    return SigningKey.generate()


@pytest.fixture(scope="session")
def docker_images() -> Iterator[None]:
    """A reachable Docker engine with the local test images built; at the end of the run the
    agent network goes if no container is attached to it."""
    if shutil.which("docker") is None or docker_cli("info").returncode != 0:
        service_missing("Docker engine not reachable (deploy/dev/ensure-services.sh docker)")
    build_test_images()
    yield
    attached = docker_cli("network", "inspect", "-f", "{{len .Containers}}", AGENT_NETWORK)
    if attached.returncode == 0 and attached.stdout.strip() == "0":
        docker_cli("network", "rm", AGENT_NETWORK)


@pytest.fixture(scope="module", autouse=True)
def test_images(request: pytest.FixtureRequest) -> None:
    """``docker_images`` for a module marked ``docker``, before the module's own fixtures (its
    agents need the engine and the images)."""
    if request.node.get_closest_marker("docker") is not None:
        request.getfixturevalue("docker_images")


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    """A client of the local Docker engine."""
    async with aiodocker.Docker() as client:
        yield client


# Browser tests drive pages whose database work is the API's and the page handlers' own,
# both walked on each database elsewhere: the page walk (marked ``every_database``) opens
# every page on both, the API and page-handler tests run on both. The other browser tests
# run on SQLite only, unless STELLAR_BROWSER_DATABASES=all: a browser test on PostgreSQL
# repeats minutes of Chromium and a real agent to exercise the same queries again.
BROWSER_DATABASES_ENV: Final = "STELLAR_BROWSER_DATABASES"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(BROWSER_DATABASES_ENV) == "all":
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("database_url") == "postgresql"
        browser = item.get_closest_marker("browser") is not None
        every = item.get_closest_marker("every_database") is not None
        (dropped if on_postgres and browser and not every else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
