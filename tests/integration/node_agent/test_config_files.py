"""Configuration files set by a real agent before a real game container starts.

The game (busybox) prints its files as its first output, so what it reads is what the agent
wrote before the start; files the agent must refuse (a symlink out of the volume, a
symlinked directory, a 100 MB file, a file that does not parse) are left byte for byte, the
game starts anyway, and its console says why, one line per file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from tests.integration.node_agent.files_client import FilesClient
from tests.integration.node_agent.live_agent import LiveServers, output_line
from tests.support.containers import BUSYBOX_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]
GAME_UID = GAME_GID = 1000
PROPERTIES = b"#Minecraft server properties\nserver-port=25565\nserver-ip=\nmotd=A Server\n"
BUNGEE = b"""# BungeeCord
servers:
  lobby:
    address: localhost:25565  # the lobby
  remote:
    address: 10.0.0.5:25565
listeners:
- host: 0.0.0.0:25577
  max_players: 1
"""
SEVEN_DAYS = b"""<?xml version="1.0"?>
<ServerSettings>
\t<property name="ServerPort" value="26900"/>
</ServerSettings>
"""


def put(volume: Path, name: str, data: bytes) -> Path:
    """A file of the game's in its volume, owned by the game user as installers leave them."""
    path = volume / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chown(path, GAME_UID, GAME_GID)
    return path


def game(script: str) -> dict[str, Any]:
    return {
        "image": BUSYBOX_IMAGE,
        "startup": ["sh", "-c", script],
        "stop": {"type": "signal", "value": "SIGKILL"},
    }


async def console_lines(api: FilesClient, server_id: uuid.UUID) -> list[str]:
    answer = await api.logs(server_id, 200)
    assert answer.status == 200, answer.body
    lines: list[str] = answer.body["lines"]
    return lines


async def bridge_gateway(docker: aiodocker.Docker, server_id: uuid.UUID) -> str:
    container = await docker.containers.get(f"stellar-{server_id}")
    networks = (await container.show())["NetworkSettings"]["Networks"]
    gateway: str = next(iter(networks.values()))["Gateway"]
    return gateway


async def test_files_are_set_before_the_game_starts_and_the_game_reads_them(
    servers: LiveServers, api: FilesClient, docker: aiodocker.Docker
) -> None:
    spec = servers.spec(
        **game(
            "cat server.properties config.yml serverconfig.xml; echo files-read; exec sleep 600"
        ),
        environment={"MOTD": "Stellar\nenable-rcon=true"},
        config_files=[
            {
                "path": "server.properties",
                "parser": "properties",
                "replace": [
                    {"match": "server-port", "value": "{{server.allocations.default.port}}"},
                    {"match": "server-ip", "value": "0.0.0.0"},
                    {"match": "motd", "value": "{{server.environment.MOTD}}"},
                ],
            },
            {
                "path": "/config.yml",
                "parser": "yaml",
                "replace": [
                    {
                        "match": "listeners[0].host",
                        "value": "0.0.0.0:{{server.build.default.port}}",
                    },
                    {
                        "match": "servers.*.address",
                        "value": "{{config.docker.interface}}$2",
                        "if_value": r"regex:^(127\.0\.0\.1|localhost)(:\d{1,5})?$",
                    },
                ],
            },
            {
                "path": "serverconfig.xml",
                "parser": "xml",
                "replace": [
                    {
                        "match": "ServerSettings.property[@name='ServerPort']",
                        "value": "[value='{{server.build.default.port}}']",
                    }
                ],
            },
        ],
    )
    server_id = uuid.UUID(spec["uuid"])
    assert (await api.create(spec)).status == 201
    volume = servers.volume(server_id)
    put(volume, "server.properties", PROPERTIES)
    put(volume, "config.yml", BUNGEE)
    put(volume, "serverconfig.xml", SEVEN_DAYS)
    port = spec["allocations"][0]["port"]

    async with api.console(server_id) as console:
        assert (await api.power(server_id, "start")).status == 200
        await console.wait_for(output_line("files-read"), timeout=30)
    printed = console.console_lines()
    gateway = await bridge_gateway(docker, server_id)

    assert f"server-port={port}" in printed
    assert "server-ip=0.0.0.0" in printed
    assert "motd=Stellar enable-rcon=true" in printed  # a variable cannot add a key
    assert f"- host: 0.0.0.0:{port}" in printed
    assert f"    address: {gateway}:25565 # the lobby" in printed
    assert "    address: 10.0.0.5:25565" in printed
    assert f'\t<property name="ServerPort" value="{port}" />' in printed
    for name in ("server.properties", "config.yml", "serverconfig.xml"):
        info = (volume / name).stat()
        assert (info.st_uid, info.st_gid) == (GAME_UID, GAME_GID)
    assert not [line for line in await console_lines(api, server_id) if "[stellar] config" in line]


async def test_refused_and_unparsable_files_are_left_and_the_start_goes_on_with_notices(
    servers: LiveServers, api: FilesClient, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "server.properties"
    secret.write_bytes(b"server-port=1\n")
    (outside / "game.ini").write_bytes(b"[Server]\nPort=1\n")
    broken = b'{"port": 25565,, "name": "broken"\n'
    spec = servers.spec(
        **game("echo game-started; exec sleep 600"),
        config_files=[
            {
                "path": "server.properties",
                "parser": "properties",
                "replace": [{"match": "server-port", "value": "{{server.build.default.port}}"}],
            },
            {
                "path": "conf/game.ini",
                "parser": "ini",
                "replace": [{"match": "Server.Port", "value": "{{server.build.default.port}}"}],
            },
            {"path": "big.json", "parser": "json", "replace": [{"match": "a", "value": "1"}]},
            {"path": "broken.json", "parser": "json", "replace": [{"match": "port", "value": "1"}]},
            {
                "path": "ok.properties",
                "parser": "properties",
                "replace": [{"match": "a", "value": "{{config.remote}}{{server.build.env.NOPE}}b"}],
            },
        ],
    )
    server_id = uuid.UUID(spec["uuid"])
    assert (await api.create(spec)).status == 201
    volume = servers.volume(server_id)
    (volume / "server.properties").symlink_to(secret)
    (volume / "conf").symlink_to(outside, target_is_directory=True)
    with (volume / "big.json").open("wb") as big:
        big.truncate(100 * 1024 * 1024)  # sparse: 100 MB to read, nothing on the disk
    put(volume, "broken.json", broken)

    async with api.console(server_id) as console:
        assert (await api.power(server_id, "start")).status == 200
        await console.wait_for(output_line("game-started"), timeout=30)
    status = await api.read(server_id)
    assert status.body["state"] == "running"

    assert secret.read_bytes() == b"server-port=1\n"
    assert (outside / "game.ini").read_bytes() == b"[Server]\nPort=1\n"
    assert (volume / "server.properties").is_symlink()
    assert (volume / "big.json").stat().st_size == 100 * 1024 * 1024
    assert (volume / "broken.json").read_bytes() == broken
    assert (volume / "ok.properties").read_bytes() == b"a=b\n"  # created, for the game user
    created = (volume / "ok.properties").stat()
    assert (created.st_uid, created.st_gid) == (GAME_UID, GAME_GID)

    notices = [line for line in await console_lines(api, server_id) if "config file" in line]
    assert len(notices) == 5, notices
    paths = ("server.properties", "conf/game.ini", "big.json", "broken.json", "ok.properties")
    by_file = {path: next(n for n in notices if f"config file {path} " in n) for path in paths}
    assert "symlink" in by_file["server.properties"]
    assert "symlink" in by_file["conf/game.ini"]
    assert "larger than 8 MiB" in by_file["big.json"]
    assert "not valid JSON" in by_file["broken.json"]
    assert "{{config.remote}}" in by_file["ok.properties"]
    assert "{{server.build.env.NOPE}}" in by_file["ok.properties"]
    assert all(line.startswith("[stellar] ") for line in notices)
