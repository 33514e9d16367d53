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
import fcntl
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
from control_plane.security import passwords
from node_agent.docker.network import AGENT_NETWORK
from tests.support.agent_process import SigningKey
from tests.support.containers import build_test_images, docker_cli
from tests.support.serving import ApiTestServer

# Under pytest-xdist (``make test`` runs two processes) each process has a Redis database of its
# own, so one's FLUSHDB or rate-limit buckets never reach the other's tests.
_WORKER: Final = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw") and "STELLAR_TEST_REDIS_URL" not in os.environ:
    os.environ["STELLAR_TEST_REDIS_URL"] = f"redis://127.0.0.1:6379/{15 - int(_WORKER[2:])}"

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


# bcrypt in the test process hashes at cost 4 instead of the configured one (10, the lowest the
# settings take): a hash costs 1 ms instead of 77, over a thousand times a run. Checking a
# password follows the cost written in its hash, so nothing else changes; a test about the
# cost itself is marked ``real_password_cost``. Control planes the tests start in processes
# of their own hash at the configured cost.
TEST_PASSWORD_COST: Final = 4


@pytest.fixture(autouse=True)
def cheap_password_hashes(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    if request.node.get_closest_marker("real_password_cost") is not None:
        passwords._dummy_hash.cache_clear()  # the unknown-user hash, made at the real cost
        yield
        passwords._dummy_hash.cache_clear()
        return
    real = passwords.hash_password_sync

    def hash_password_sync(password: str, cost: int) -> str:
        return real(password, min(cost, TEST_PASSWORD_COST))

    monkeypatch.setattr(passwords, "hash_password_sync", hash_password_sync)
    yield


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


async def _copy_migrated(database_url: str) -> bool:
    """Make ``database_url`` (new and empty) a copy of the run's migrated database; False if
    it could not be, and it is to be migrated as it is."""
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    template = await _migrated_template(kind)
    if template is None:
        return False
    if kind == "sqlite":
        target = Path(str(make_url(database_url).database))
        if target.exists():  # made by something else already
            return False
        source, copy = sqlite3.connect(template), sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        return True
    name = make_url(database_url).database
    admin = await asyncpg.connect(make_url(POSTGRES_URL).render_as_string(hide_password=False))
    try:
        await admin.execute(f'DROP DATABASE "{name}"')
    except asyncpg.ObjectInUseError:  # something is in it already
        await admin.close()
        return False
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    except asyncpg.PostgresError:
        await admin.execute(f'CREATE DATABASE "{name}"')  # empty again
        return False
    finally:
        await admin.close()
    return True


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run's PostgreSQL template goes with it (the SQLite one is a temporary file's), and
    the agent network if idle."""
    _remove_idle_agent_network(session)
    template = _MIGRATED.get("postgresql")
    if template:
        url = make_url(POSTGRES_URL).set(database=template).render_as_string(hide_password=False)
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            asyncio.run(_drop_postgres_database(url))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated database of each kind: a copy of the run's migrated one (made
    by the same upgrade, which takes 0.15 s even to find a database at head), or one the
    upgrade migrates if it could not be copied."""
    copied = await _copy_migrated(database_url)
    engine = create_engine(database_url)
    if not copied:
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
def docker_images() -> None:
    """A reachable Docker engine with the local test images built."""
    if shutil.which("docker") is None or docker_cli("info").returncode != 0:
        service_missing("Docker engine not reachable (deploy/dev/ensure-services.sh docker)")
    with _machine_lock("images"):  # the test processes of one run build them once
        build_test_images()


@contextlib.contextmanager
def _machine_lock(name: str) -> Iterator[None]:
    """Held by one test process of the machine at a time."""
    with open(Path(tempfile.gettempdir()) / f"stellar-tests-{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _remove_idle_agent_network(session: pytest.Session) -> None:
    """At the end of the run (of its last process under xdist, whose workers may still start
    containers while one of them ends) the agent network goes if no container is attached."""
    if hasattr(session.config, "workerinput") or shutil.which("docker") is None:
        return
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


# ``make test`` (tests/run) runs the suite in two test processes (pytest-xdist), then these
# modules alone, one test at a time: what they change is the machine's, or what they measure is
# time that another process's tests would take from them.
SERIAL_MODULES: Final[Mapping[str, str]] = {
    "tests/integration/deploy/": "network namespaces, the host's nftables, apt and services",
    "tests/integration/node_agent/test_egress.py": "routes 198.18.0.0/15 in the host namespace",
    "tests/integration/node_agent/test_installer_egress.py": "the same routes",
    "tests/integration/test_make_run.py": "the whole development stack, timed",
    "tests/integration/test_devstack_exit.py": "the whole development stack, timed",
    "tests/integration/test_fleet_bench.py": "fifty nodes and three replicas at once",
    "tests/integration/control_plane/test_replicas.py": "a takeover within 10 s",
    "tests/integration/control_plane/test_replica_faults.py": "services stopped, timed",
    "tests/integration/control_plane/test_service_faults.py": "services stopped, timed",
    "tests/integration/control_plane/test_schedule_replicas.py": "replicas racing, timed",
    "tests/integration/control_plane/test_schedule_frozen_replica.py": "a frozen replica, timed",
    "tests/integration/control_plane/test_slow_node.py": "a slow node's answers, timed",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = config.rootpath
    for item in items:
        where = item.path.relative_to(root).as_posix()
        if any(where.startswith(module) for module in SERIAL_MODULES):
            item.add_marker(pytest.mark.serial)
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
