"""The file API against traps the game itself plants in its volume (the Wings advisories).

Each test runs a real fake-game container; the trap is made from inside it with
``docker exec`` as the game's user, and a marker on the host, outside the volume, proves
that nothing outside was read, written, chmod-ed or deleted.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.node_agent.files_client import (
    FilesClient,
    in_game,
)
from tests.integration.node_agent.live_agent import LiveServers

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]
SECRET = b"host secret, never to be served\n"


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    """A directory on the host, outside every volume, holding a marker file (mode 0600)."""
    directory = tmp_path / "host"
    directory.mkdir()
    marker = directory / "marker.txt"
    marker.write_bytes(SECRET)
    marker.chmod(0o600)
    return directory


def assert_marker_untouched(host_dir: Path) -> None:
    marker = host_dir / "marker.txt"
    assert marker.read_bytes() == SECRET
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600
    assert sorted(p.name for p in host_dir.iterdir()) == ["marker.txt"]


async def test_symlink_to_a_host_file_is_refused_by_every_operation(
    servers: LiveServers, api: FilesClient, host_dir: Path
) -> None:
    server_id = await servers.started()
    in_game(server_id, f"ln -s {host_dir}/marker.txt /home/container/evil")

    listing = await api.listing(server_id)
    [entry] = [e for e in listing.body["entries"] if e["name"] == "evil"]
    assert entry["type"] == "symlink"
    assert entry["link_target"] == f"{host_dir}/marker.txt"

    answers = [
        await api.read_file(server_id, "/evil"),
        await api.write_file(server_id, "/evil", b"overwritten"),
        await api.post(server_id, "chmod", {"path": "/evil", "mode": "0777"}),
        await api.post(server_id, "delete", {"paths": ["/evil"]}),
        await api.post(server_id, "copy", {"source": "/evil", "destination": "/stolen"}),
        await api.post(server_id, "compress", {"paths": ["evil"], "format": "zip"}),
    ]
    for answer in answers:
        assert answer.status == 403, answer
        assert answer.body["error"]["code"] == "path_refused"
    assert_marker_untouched(host_dir)
    names = {e["name"] for e in (await api.listing(server_id)).body["entries"]}
    assert names == {"evil"}


async def test_write_through_a_dangling_symlink_creates_nothing_on_the_host(
    servers: LiveServers, api: FilesClient, host_dir: Path
) -> None:
    """CVE-2023-25152: a link to a host path that does not exist yet."""
    server_id = await servers.started()
    in_game(server_id, f"ln -s {host_dir}/planted.sh /home/container/dangling")

    answer = await api.write_file(server_id, "/dangling", b"#!/bin/sh\necho owned\n")
    upload = await api.upload(server_id, "/dangling", 3, _chunks(b"abc"))

    assert answer.status == 403, answer
    assert upload.status == 403, upload
    assert not (host_dir / "planted.sh").exists()
    assert_marker_untouched(host_dir)


async def test_symlinked_parent_directory_is_refused_for_mkdir_write_and_list(
    servers: LiveServers, api: FilesClient, host_dir: Path
) -> None:
    server_id = await servers.started()
    in_game(server_id, f"ln -s {host_dir} /home/container/linked")

    answers = [
        await api.post(server_id, "directory", {"path": "/linked/newdir"}),
        await api.write_file(server_id, "/linked/new.txt", b"x"),
        await api.write_file(server_id, "/linked/marker.txt", b"x"),
        await api.listing(server_id, "/linked"),
        await api.read_file(server_id, "/linked/marker.txt"),
        await api.post(server_id, "rename", {"source": "/linked/marker.txt", "destination": "/m"}),
    ]
    for answer in answers:
        assert answer.status == 403, answer
    assert_marker_untouched(host_dir)


async def test_deleting_a_directory_holding_a_link_to_a_host_directory_spares_the_host(
    servers: LiveServers, api: FilesClient, host_dir: Path
) -> None:
    """CVE-2023-25168: the recursive delete unlinks the link, never what it names."""
    server_id = await servers.started()
    in_game(
        server_id,
        f"cd /home/container && mkdir -p plugins/sub && ln -s {host_dir} plugins/sub/h"
        f" && ln -s {host_dir}/marker.txt plugins/m && echo x > plugins/a",
    )

    answer = await api.post(server_id, "delete", {"paths": ["/plugins"]})

    assert answer.status == 204, answer
    assert not (servers.agent.data_dir / "volumes" / str(server_id) / "plugins").exists()
    assert_marker_untouched(host_dir)


async def test_chmod_on_a_symlink_changes_nothing_outside(
    servers: LiveServers, api: FilesClient, host_dir: Path
) -> None:
    """GHSA-rhq6-9rgh-v45c: chmod never follows a link (Linux cannot chmod one: refused)."""
    server_id = await servers.started()
    in_game(
        server_id,
        f"ln -s {host_dir}/marker.txt /home/container/m && ln -s {host_dir} /home/container/d",
    )

    for path in ("/m", "/d", "/d/marker.txt"):
        answer = await api.post(server_id, "chmod", {"path": path, "mode": 0o777})
        assert answer.status == 403, answer
    assert_marker_untouched(host_dir)
    assert stat.S_IMODE(host_dir.stat().st_mode) != 0o777


async def test_directory_swapped_for_a_link_to_root_never_lets_a_write_land_outside(
    servers: LiveServers, api: FilesClient
) -> None:
    """The game swaps ``d`` between a directory and a link to ``/`` while the agent writes."""
    server_id = await servers.started()
    in_game(
        server_id,
        "cd /home/container && while :; do rm -rf d; mkdir d; rm -rf d; ln -s / d; done",
        detach=True,
    )
    tag = f"stellar-race-{secrets.token_hex(6)}"
    outcomes: dict[int, int] = {}

    async def one(index: int) -> None:
        answer = await api.write_file(server_id, f"/d/{tag}-{index}", b"race")
        outcomes[answer.status] = outcomes.get(answer.status, 0) + 1

    for start in range(0, 1000, 20):
        await asyncio.gather(*(one(i) for i in range(start, start + 20)))

    in_game(server_id, "pkill -f 'rm -rf d' || true")
    assert sum(outcomes.values()) == 1000
    assert set(outcomes) <= {200, 403, 404, 409}, outcomes
    assert outcomes.get(403, 0) > 0, outcomes  # the link was really there, and refused
    stray = [name for name in os.listdir("/") if name.startswith(tag)]
    assert stray == []


async def test_ordinary_operations_work_inside_the_volume(
    servers: LiveServers, api: FilesClient
) -> None:
    server_id = await servers.started()
    volume = servers.agent.data_dir / "volumes" / str(server_id)

    assert (await api.post(server_id, "directory", {"path": "/cfg"})).status == 201
    written = await api.write_file(server_id, "/cfg/server.properties", b"motd=hi\n")
    assert written.status == 200, written
    assert written.body["size"] == 8
    assert (await api.read_file(server_id, "/cfg/server.properties")).body == b"motd=hi\n"
    copied = await api.post(server_id, "copy", {"source": "/cfg/server.properties"})
    assert copied.status == 201, copied
    assert copied.body["path"] == "/cfg/server copy.properties"
    moved = await api.post(server_id, "rename", {"source": "/cfg", "destination": "/conf"})
    assert moved.status == 200, moved
    chmod = await api.post(server_id, "chmod", {"path": "/conf/server.properties", "mode": "600"})
    assert chmod.body["mode"] == 0o600

    listing = await api.listing(server_id, "/conf")
    assert [e["name"] for e in listing.body["entries"]] == [
        "server copy.properties",
        "server.properties",
    ]
    info = (volume / "conf" / "server.properties").stat()
    assert (info.st_uid, info.st_gid) == (1000, 1000)
    # The game (uid 1000) can change what the agent wrote.
    in_game(server_id, "echo more >> /home/container/conf/server.properties")
    assert (await api.post(server_id, "delete", {"paths": ["/conf"]})).status == 204
    assert not (volume / "conf").exists()
    assert (await api.read_file(server_id, "/../etc/passwd")).status == 400


async def test_deny_listed_paths_are_hidden_and_refused(
    servers: LiveServers, api: FilesClient
) -> None:
    server_id = await servers.started(file_denylist=["*.key", "/secrets/", "!public.key"])
    in_game(
        server_id,
        "cd /home/container && mkdir secrets && echo s > secrets/a && echo k > tls.key"
        " && echo p > public.key && mkdir box && echo k > box/inner.key",
    )

    names = {e["name"] for e in (await api.listing(server_id)).body["entries"]}
    assert names == {"box", "public.key"}
    refused = [
        await api.read_file(server_id, "/tls.key"),
        await api.read_file(server_id, "/secrets/a"),
        await api.write_file(server_id, "/new.key", b"x"),
        await api.listing(server_id, "/secrets"),
        await api.post(server_id, "delete", {"paths": ["/box"]}),
        await api.post(server_id, "rename", {"source": "/box", "destination": "/b2"}),
        await api.post(server_id, "copy", {"source": "/box"}),
        await api.post(server_id, "compress", {"paths": ["box"]}),
    ]
    for answer in refused:
        assert answer.status == 403, answer
        assert answer.body["error"]["code"] == "path_denied"
    assert (await api.read_file(server_id, "/public.key")).body == b"p\n"


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
