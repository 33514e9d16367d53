"""What importing eggs costs: eggs/s through the service and through the HTTP route.

Run ``python bench/egg_import.py`` (``--help`` for the options). In one run it

1. migrates a fresh SQLite file (and, with ``--postgres URL``, a fresh PostgreSQL database
   created for the run and dropped after it);
2. imports ``--eggs`` eggs (100 by default) cycling the community eggs of
   ``tests/data/eggs/`` through the real service: bytes -> ``read_eggs`` -> ``map_eggs`` ->
   ``save_eggs``, one transaction per egg, as the API does (the first cycle creates the
   blueprints, the next ones update them, as re-importing does); eggs whose rules cannot all
   be translated are imported with ``accept_unknown_rules``;
3. as the baseline, in the same run and alternating with (2) in blocks, saves as many plain
   blueprints (``save_blueprint`` of a validated ``BlueprintCreate``, the work of
   ``POST /api/v1/blueprints``) and reports the ratio;
4. measures the mapping alone (no database): parse + map + validate per egg;
5. does (2) and (3) again through the real app in this process (``create_app``, an
   administrator's session, ``POST /api/v1/blueprints/import`` against
   ``POST /api/v1/blueprints``), one request at a time.

It prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from aiohttp.test_utils import TestClient, TestServer

# Run as a script (python bench/x.py), the repository root is not on the path yet.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.databases import create_postgres_database, drop_postgres_database
from control_plane import cli_ops
from control_plane.app import create_app
from control_plane.db.engine import create_engine, session_factory
from control_plane.db.session import transaction
from control_plane.schemas.blueprints import BlueprintCreate
from control_plane.services import blueprints as blueprint_service
from control_plane.services import users as user_service
from control_plane.services.eggs.importing import map_eggs, save_eggs
from control_plane.services.eggs.reading import EggFormat, format_of, read_eggs
from control_plane.settings import ControlPlaneSettings, load_settings

EGGS: Final = Path(__file__).resolve().parents[1] / "tests" / "data" / "eggs"
EMAIL: Final = "bench-admin@example.org"
PASSWORD: Final = "correct horse battery staple"
BLOCK: Final = 10
PLAIN: Final[dict[str, Any]] = {
    "description": "a plain blueprint",
    "images": [{"name": "default", "image": "ghcr.io/pterodactyl/yolks:java_21"}],
    "startup": "java -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}} --port {{SERVER_PORT}}",
    "stop": {"type": "command", "value": "stop"},
    "variables": [
        {"env": "SERVER_JARFILE", "name": "Jar", "default": "server.jar", "required": True}
    ],
}


def egg_files() -> list[tuple[str, bytes, EggFormat]]:
    files = sorted(p for p in EGGS.iterdir() if p.suffix in (".json", ".yaml"))
    return [(p.name, p.read_bytes(), format_of("", p.name)) for p in files]


def settings_for(database_url: str) -> ControlPlaneSettings:
    return load_settings(
        {
            "STELLAR_DATABASE_URL": database_url,
            "STELLAR_AUTH_SECRET": "k3Jd9QmX2vLp7RtN4wYb8ZcF6hGs1aEu0iOy5TnM",
            "STELLAR_BCRYPT_COST": "10",
            "STELLAR_RATE_LIMITS": (
                "api=1000000/60,authentication=1000000/60,sign_in_account=1000000/60"
            ),
        }
    )


async def timed(action: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


async def alternate(
    count: int,
    first: Callable[[int], Awaitable[None]],
    second: Callable[[int], Awaitable[None]],
) -> tuple[list[float], list[float]]:
    """``count`` runs of each, in alternating blocks of BLOCK: noise falls on both alike."""
    a: list[float] = []
    b: list[float] = []
    for start in range(0, count, BLOCK):
        for i in range(start, min(count, start + BLOCK)):
            a.append(await timed(lambda i=i: first(i)))  # type: ignore[misc]
        for i in range(start, min(count, start + BLOCK)):
            b.append(await timed(lambda i=i: second(i)))  # type: ignore[misc]
    return a, b


def show(label: str, eggs: list[float], plain: list[float]) -> None:
    rate, base = len(eggs) / sum(eggs), len(plain) / sum(plain)
    print(
        f"{label:<28} {rate:8.1f} eggs/s  (median {statistics.median(eggs) * 1000:6.2f} ms)"
        f"   plain blueprint {base:8.1f}/s (median {statistics.median(plain) * 1000:6.2f} ms)"
        f"   ratio {rate / base:5.2f}"
    )


async def service_run(settings: ControlPlaneSettings, count: int, label: str) -> None:
    files = egg_files()
    await cli_ops.migrate(settings)
    engine = create_engine(settings.database_url or "")
    factory = session_factory(engine)

    async def import_one(i: int) -> None:
        _, raw, kind = files[i % len(files)]
        mapped = map_eggs(read_eggs(raw, kind), accept_unknown_rules=True)
        async with transaction(factory) as db:
            await save_eggs(db, mapped)

    async def plain_one(i: int) -> None:
        data = BlueprintCreate.model_validate({**PLAIN, "name": f"plain {label} {i}"})
        async with transaction(factory) as db:
            await blueprint_service.save_blueprint(db, data)

    try:
        eggs, plain = await alternate(count, import_one, plain_one)
    finally:
        await engine.dispose()
    show(f"service, {label}", eggs, plain)


def mapping_only(count: int) -> None:
    files = egg_files()
    samples = []
    for i in range(count):
        _, raw, kind = files[i % len(files)]
        started = time.perf_counter()
        map_eggs(read_eggs(raw, kind), accept_unknown_rules=True)
        samples.append(time.perf_counter() - started)
    per_file: dict[str, list[float]] = {}
    for i, sample in enumerate(samples):
        per_file.setdefault(files[i % len(files)][0], []).append(sample)
    print(f"{'mapping only (no database)':<28} {count / sum(samples):8.1f} eggs/s")
    for name, values in sorted(per_file.items()):
        print(f"    {name:<38} {statistics.median(values) * 1000:6.2f} ms")


async def http_run(settings: ControlPlaneSettings, count: int, label: str) -> None:
    files = egg_files()
    await cli_ops.migrate(settings)
    engine = create_engine(settings.database_url or "")
    try:
        async with transaction(session_factory(engine)) as db:
            await user_service.create_user(
                db, email=EMAIL, password=PASSWORD, is_admin=True, bcrypt_cost=10
            )
    finally:
        await engine.dispose()
    async with TestClient(TestServer(create_app(settings, background_jobs=False))) as client:
        login = await client.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
        csrf = (await login.json())["csrf_token"]

        async def import_one(i: int) -> None:
            name, raw, kind = files[i % len(files)]
            media = "application/yaml" if kind == "yaml" else "application/json"
            response = await client.post(
                "/api/v1/blueprints/import?accept_unknown_rules=true",
                data=raw,
                headers={"Content-Type": media, "X-CSRF-Token": csrf},
            )
            assert response.status == 200, (name, await response.text())

        async def plain_one(i: int) -> None:
            response = await client.post(
                "/api/v1/blueprints",
                data=json.dumps({**PLAIN, "name": f"plain http {i}"}),
                headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
            )
            assert response.status == 201, await response.text()

        eggs, plain = await alternate(count, import_one, plain_one)
    show(f"HTTP route, {label}", eggs, plain)


async def run(args: argparse.Namespace) -> None:
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cpus")
    print(f"{args.eggs} eggs cycling {len(egg_files())} files of {EGGS}")
    mapping_only(args.eggs)
    with tempfile.TemporaryDirectory() as root:
        await service_run(settings_for(f"sqlite:///{root}/service.db"), args.eggs, "SQLite")
        await http_run(settings_for(f"sqlite:///{root}/http.db"), args.eggs, "SQLite")
    if args.postgres:
        for runner in (service_run, http_run):
            url = await create_postgres_database(args.postgres)
            try:
                await runner(settings_for(url), args.eggs, "PostgreSQL")
            finally:
                await drop_postgres_database(args.postgres, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eggs", type=int, default=100)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("STELLAR_TEST_POSTGRES_URL"),
        help="a PostgreSQL URL whose role may CREATE DATABASE ($STELLAR_TEST_POSTGRES_URL)",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
