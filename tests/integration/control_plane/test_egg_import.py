"""Importing and exporting eggs through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import select

from control_plane.db.engine import session_factory
from control_plane.db.models import Allocation, AuditEntry, Blueprint, Node, Server, User
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.services.servers import placement
from control_plane.services.servers.startup import build_spec
from tests.support.panel import Browser, Panel
from tests.unit.control_plane.test_egg_reading import BILLION_LAUGHS

EGGS = Path(__file__).parents[2] / "data" / "eggs"
IMPORT = "/api/v1/blueprints/import"
JSON_EGGS = sorted(p.name for p in EGGS.glob("*.json"))


def egg_bytes(name: str) -> bytes:
    return (EGGS / name).read_bytes()


async def admin(panel: Panel) -> Browser:
    return await panel.signed_in("root@example.org", admin=True)


async def import_raw(
    browser: Browser, body: bytes, content_type: str, status: int = 200, query: str = ""
) -> Any:
    return await browser.json(
        "POST", IMPORT + query, status=status, data=body, headers={"Content-Type": content_type}
    )


def report(result: dict[str, Any], field: str) -> list[tuple[str, str]]:
    return [(i["outcome"], i["detail"]) for i in result["report"] if i["field"] == field]


async def test_every_test_egg_imports_with_its_report(panel: Panel) -> None:
    browser = await admin(panel)
    eggs = [json.loads(egg_bytes(name)) for name in JSON_EGGS]
    body = json.dumps(eggs).encode()
    imported = await import_raw(
        browser, body, "application/json", query="?accept_unknown_rules=true"
    )
    results = {r["blueprint"]["name"]: r for r in imported["data"]}
    assert len(results) == len(JSON_EGGS)
    assert all(r["created"] for r in results.values())
    paper = results["Paper"]
    assert paper["version"] == "PTDL_v2"
    assert paper["blueprint"]["config_files"][0]["parser"] == "properties"
    assert paper["blueprint"]["startup_done"] == [")! For help, type "]
    assert ("mapped", "split into arguments, never given to a shell") in report(paper, "startup")
    seven = results["7 Days To Die"]
    assert seven["blueprint"]["image_command"] is True
    bungee = results["Bungeecord"]
    assert ("mapped", "'required|alpha_num|between:1,6' enforced") in report(
        bungee, "variables.BUNGEE_VERSION.rules"
    )
    foundry = results["Foundry VTT"]
    assert foundry["blueprint"]["egg_uuid"] == "ce000ebf-dc6b-45ee-823d-b802005aaceb"
    listed = await browser.json("GET", "/api/v1/blueprints")
    assert len(listed["data"]) == len(JSON_EGGS)
    factory = session_factory(panel.server.app[ENGINE])
    async with transaction(factory) as db:
        actions = (
            await db.scalars(select(AuditEntry).where(AuditEntry.action == "blueprint.imported"))
        ).all()
    assert len(actions) == len(JSON_EGGS)


async def test_yaml_bodies_and_file_uploads_are_read(panel: Panel) -> None:
    browser = await admin(panel)
    yaml_egg = await import_raw(browser, egg_bytes("plcn-v3-craftopia.yaml"), "application/yaml")
    (craftopia,) = yaml_egg["data"]
    assert craftopia["version"] == "PLCN_v3"
    assert craftopia["blueprint"]["config_files"][0]["parser"] == "ini"
    form = aiohttp.FormData()
    form.add_field(
        "file",
        egg_bytes("stellar-toml-example.yaml"),
        filename="egg-toml.yaml",
        content_type="application/octet-stream",
    )
    uploaded = await browser.json("POST", IMPORT, data=form)
    (toml,) = uploaded["data"]
    assert toml["blueprint"]["config_files"][0]["parser"] == "toml"
    assert [v["env"] for v in toml["blueprint"]["variables"]] == [
        "SERVER_NAME",
        "SERVER_SERVER_PORT",
    ]


async def test_a_refused_egg_is_a_400_with_its_report_and_imports_nothing(panel: Panel) -> None:
    browser = await admin(panel)
    eggs = [json.loads(egg_bytes("ptdl-v2-openttd.json"))]
    eggs.append(json.loads(egg_bytes("ptdl-v2-minecraft-bungeecord.json")))
    # No community egg has a rule left that we cannot enforce: one is added.
    eggs[1]["variables"][0]["rules"] += "|exists:versions,name"
    refused = await import_raw(browser, json.dumps(eggs).encode(), "application/json", 400)
    error = refused["error"]
    assert error["message"].startswith("1 of 2 eggs cannot be imported")
    refusals = [d for d in error["details"] if d["type"] == "egg_refused"]
    assert refusals == [
        {
            "loc": ["eggs", 1, "variables.BUNGEE_VERSION.rules"],
            "msg": "cannot enforce 'exists:versions,name'; import with accept_unknown_rules "
            "to enforce the variable as a plain string instead",
            "type": "egg_refused",
        }
    ]
    assert {
        "loc": ["eggs", 1, "startup"],
        "msg": "split into arguments, never given to a shell",
        "type": "egg_mapped",
    } in error["details"]
    assert (await browser.json("GET", "/api/v1/blueprints"))["data"] == []
    bomb = await import_raw(browser, BILLION_LAUGHS, "text/yaml", 400)
    assert "anchors and aliases" in bomb["error"]["message"]
    plain = await import_raw(browser, b"{}", "text/plain", 400)
    assert "application/json, application/yaml" in plain["error"]["message"]


async def _server_with(panel: Panel, blueprint_id: str, variables: dict[str, str]) -> uuid.UUID:
    """A server of the blueprint, recorded straight into the database (its node never asked)."""
    owner = uuid.UUID(await panel.create_user("owner@example.org"))
    factory = session_factory(panel.server.app[ENGINE])
    async with transaction(factory) as db:
        node = Node(name="n1", url="http://127.0.0.1:9", memory_mib=0, disk_mib=0)
        db.add(node)
        await db.flush()
        db.add(Allocation(node_id=node.id, ip="127.0.0.1", port=30000))
        blueprint = await db.get(Blueprint, uuid.UUID(blueprint_id))
        user = await db.get(User, owner)
        assert blueprint is not None
        assert user is not None
        server = await placement.create_server(
            db,
            name="foundry",
            owner=user,
            blueprint=blueprint,
            node_id=node.id,
            image=None,
            limits=placement.ServerLimits(1024, 0, 100, 2048, 256),
            variables=variables,
        )
        return server.id


async def test_reimport_updates_the_blueprint_and_keeps_server_values(panel: Panel) -> None:
    browser = await admin(panel)
    egg = json.loads(egg_bytes("plcn-v1-foundry-vtt.json"))
    (first,) = (await import_raw(browser, json.dumps(egg).encode(), "application/json"))["data"]
    blueprint_id = first["blueprint"]["id"]
    defaults = {v["env"]: v["default"] for v in first["blueprint"]["variables"]}
    values = {
        **defaults,
        "TIMED_URL": "https://example.org/foundry.zip",
        "WORLD_NAME": "campaign-world",
    }
    server_id = await _server_with(panel, blueprint_id, values)

    # The new version of the egg allows only short world names and renames the blueprint.
    (world,) = [v for v in egg["variables"] if v["env_variable"] == "WORLD_NAME"]
    world["rules"] = "nullable|string|max:8"
    egg["name"] = "Foundry VTT (v2)"
    (again,) = (await import_raw(browser, json.dumps(egg).encode(), "application/json"))["data"]
    assert again["created"] is False
    assert again["blueprint"]["id"] == blueprint_id
    assert again["blueprint"]["name"] == "Foundry VTT (v2)"
    changed = next(v for v in again["blueprint"]["variables"] if v["env"] == "WORLD_NAME")
    assert changed["max"] == 8

    factory = session_factory(panel.server.app[ENGINE])
    async with transaction(factory) as db:
        server = await db.get(Server, server_id)
        assert server is not None
        assert server.variables == values
        spec = await build_spec(db, server)
    assert spec.environment["WORLD_NAME"] == "campaign-world"
    assert spec.config_files[0].path == "data/Config/options.json"
    assert spec.startup_done == ("Server started and listening on port",)
    assert spec.startup_template == again["blueprint"]["startup"]
    assert spec.install is not None
    assert spec.install.volume_path == "/mnt/server"
    # The stored value is kept until it is next checked: then the administrator must fix it.
    refused = await browser.json(
        "PATCH", f"/api/v1/servers/{server_id}/startup", status=400, json={}
    )
    assert refused["error"]["details"] == [
        {
            "loc": ["variables", "WORLD_NAME"],
            "msg": "must be at most 8 characters",
            "type": "value_error",
        }
    ]

    # An egg without a uuid updates the blueprint of the same name.
    teamspeak = egg_bytes("ptdl-v1-teamspeak3.json")
    (created,) = (await import_raw(browser, teamspeak, "application/json"))["data"]
    (updated,) = (await import_raw(browser, teamspeak, "application/json"))["data"]
    assert (created["created"], updated["created"]) == (True, False)
    assert created["blueprint"]["id"] == updated["blueprint"]["id"]


async def test_export_then_import_through_the_api_is_a_fixed_point(panel: Panel) -> None:
    browser = await admin(panel)
    for name in ("plcn-v3-minecraft-velocity.json", "ptdl-v2-7-days-to-die.json"):
        (imported,) = (await import_raw(browser, egg_bytes(name), "application/json"))["data"]
        original = imported["blueprint"]
        for form in ("ptdl_v2", "plcn_v3"):
            response = await browser.request(
                "GET", f"/api/v1/blueprints/{original['id']}/export?format={form}"
            )
            assert response.status == 200
            assert "attachment" in response.headers["Content-Disposition"]
            exported = await response.read()
            assert (
                json.loads(exported)["meta"]["version"]
                == {"ptdl_v2": "PTDL_v2", "plcn_v3": "PLCN_v3"}[form]
            )
            (again,) = (await import_raw(browser, exported, "application/json"))["data"]
            assert again["created"] is False
            assert again["blueprint"] == original
    wrong = await browser.json(
        "GET", f"/api/v1/blueprints/{original['id']}/export?format=yaml", status=400
    )
    assert wrong["error"]["details"][0]["loc"] == ["format"]
