"""``stellar-cp blueprint import FILE|URL`` and ``blueprint export``: files, URLs through the
SSRF guard, the printed report."""

from __future__ import annotations

import asyncio
import json
from ipaddress import ip_network
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.__main__ import main
from control_plane.cli_ops import import_eggs
from control_plane.db.engine import create_engine, session_factory
from control_plane.db.migrate import upgrade
from control_plane.db.models import AuditEntry
from control_plane.db.session import transaction
from control_plane.settings import ControlPlaneSettings
from shared.outbound import OutboundClient
from shared.ssrf import UnsafeURL
from tests.integration.control_plane.conftest import AUTH_SECRET

EGGS = Path(__file__).parents[2] / "data" / "eggs"


async def test_a_file_is_imported_then_updated_and_audited(
    engine: AsyncEngine, settings: ControlPlaneSettings
) -> None:
    path = str(EGGS / "plcn-v3-craftopia.yaml")
    (first,) = await import_eggs(settings, path)
    (second,) = await import_eggs(settings, path)
    assert (first.created, second.created) == (True, False)
    assert first.blueprint.id == second.blueprint.id
    assert first.blueprint.egg_uuid == "6304c348-83aa-420a-aa84-15a52d995964"
    assert ("ignored", "tags") in [(i.outcome, i.field) for i in first.report]
    async with transaction(session_factory(engine)) as db:
        entries = (
            await db.scalars(select(AuditEntry).where(AuditEntry.action == "blueprint.imported"))
        ).all()
    assert [e.details["by"] for e in entries] == ["cli", "cli"]


async def test_a_url_is_fetched_through_the_guard(
    engine: AsyncEngine, settings: ControlPlaneSettings, aiohttp_server: AiohttpServer
) -> None:
    app = web.Application()
    egg = (EGGS / "ptdl-v2-openttd.json").read_bytes()

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=egg, content_type="application/json")

    app.router.add_get("/eggs/egg-openttd.json", serve)
    server = await aiohttp_server(app)

    async def eggs_test(host: str) -> list[str]:
        return ["127.0.0.1"] if host == "eggs.test" else []

    # A made-up name that resolves to the local server, let through for this test only; an
    # IP literal is never exempt.
    local = frozenset({ip_network("127.0.0.1/32")})
    async with OutboundClient(resolver=eggs_test, allow_for_tests=local) as client:
        url = f"http://eggs.test:{server.port}/eggs/egg-openttd.json"
        (imported,) = await import_eggs(settings, url, outbound=client)
        assert imported.blueprint.name == "OpenTTD Server"
        with pytest.raises(UnsafeURL, match="private or reserved"):
            await import_eggs(
                settings, f"http://127.0.0.1:{server.port}/eggs/egg-openttd.json", outbound=client
            )


@pytest.fixture
def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite database the CLI's settings point at."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    async def migrate() -> None:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    monkeypatch.setenv("STELLAR_DATABASE_URL", url)
    monkeypatch.setenv("STELLAR_AUTH_SECRET", AUTH_SECRET)
    return url


@pytest.mark.usefixtures("cli_database")
def test_the_cli_refuses_private_urls(capsys: pytest.CaptureFixture[str]) -> None:
    for url in (
        "http://127.0.0.1:8080/egg.json",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/egg.json",
        "file:///etc/passwd",
    ):
        assert main(["blueprint", "import", url]) == 1
        err = capsys.readouterr().err
        assert err.startswith("stellar-cp: "), url
        if url.startswith("http"):
            assert "is a private or reserved address" in err, url
    assert main(["blueprint", "import", "http://localhost:8080/egg.json"]) == 1
    assert "resolves to a private or reserved address" in capsys.readouterr().err


@pytest.mark.usefixtures("cli_database")
def test_the_cli_prints_the_report_and_exports(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    egg = json.loads((EGGS / "ptdl-v2-minecraft-bungeecord.json").read_text())
    # No community egg has a rule left that we cannot enforce: one is added.
    egg["variables"][0]["rules"] += "|exists:versions,name"
    bungeecord = str(tmp_path / "egg-bungeecord.json")
    Path(bungeecord).write_text(json.dumps(egg))
    assert main(["blueprint", "import", bungeecord]) == 1
    err = capsys.readouterr().err
    assert "the egg cannot be imported" in err
    refusal = "variables.BUNGEE_VERSION.rules: cannot enforce 'exists:versions,name'"
    assert f"  egg 0  refused  {refusal}" in err

    assert main(["blueprint", "import", bungeecord, "--accept-unknown-rules"]) == 0
    out = capsys.readouterr().out
    first, *lines = out.splitlines()
    assert first.startswith("created blueprint 'Bungeecord' (")
    assert first.endswith(") from a PTDL_v2 egg")
    expected = "cannot enforce 'exists:versions,name': enforced as a string"
    assert f"  changed  variables.BUNGEE_VERSION.rules: {expected}" in lines
    blueprint_id = first.split("(")[1].split(")")[0]

    assert main(["blueprint", "export", blueprint_id, "--format", "plcn_v3"]) == 0
    egg = json.loads(capsys.readouterr().out)
    assert egg["meta"]["version"] == "PLCN_v3"
    assert egg["startup_commands"]["Default"].startswith("java -Xms128M")
    assert main(["blueprint", "export", "nope"]) == 1
    assert "'nope' is not a blueprint id" in capsys.readouterr().err
