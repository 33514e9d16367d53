"""What reaches the user when the node answers: a refusal is passed on as such.

A node that refuses the user's request (a symlink in the way, no such file, a conflict)
answers 4xx; the control plane passes on the same status and the node's message, on plain
calls and on the streamed routes (download, upload) alike. 502/503 are kept for a node that
cannot be reached or answers something unusable; a node that refuses our command token (401)
is such a node.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.control_plane.stack import Stack
from tests.support.agent_process import SigningKey

pytestmark = pytest.mark.docker


async def test_a_symlink_refused_by_the_node_is_a_403_with_its_message(
    stack: Stack, tmp_path: Path
) -> None:
    server_id, owner = await stack.owned_server("planter@example.org")
    files = f"/api/v1/servers/{server_id}/files"
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not the game's\n")
    # What a game can do in its own volume: a link to somewhere else on the host.
    os.symlink(outside, stack.volume(server_id) / "escape")

    written = await owner.json(
        "PUT", f"{files}/contents?path=/escape", status=403, data=b"overwrite the host\n"
    )
    assert written["error"] == {
        "code": "forbidden",
        "message": "/escape is a symlink; the agent never follows one",
        "details": [],
    }
    uploaded = await owner.json(
        "PUT", f"{files}/upload?path=/escape&size=5", status=403, data=io.BytesIO(b"12345")
    )
    assert uploaded["error"]["message"] == written["error"]["message"]
    downloaded = await owner.request("GET", f"{files}/contents?path=/escape")
    assert downloaded.status == 403
    assert (await downloaded.json())["error"]["code"] == "forbidden"
    assert outside.read_bytes() == b"not the game's\n"


async def test_other_refusals_keep_their_status(stack: Stack) -> None:
    server_id, owner = await stack.owned_server("refused@example.org")
    files = f"/api/v1/servers/{server_id}/files"
    missing = await owner.json("GET", f"{files}/contents?path=/nothing.txt", status=404)
    assert missing["error"]["message"] == "/nothing.txt: no such file or directory"
    await owner.json("POST", f"{files}/directory", status=201, json={"path": "/world"})
    exists = await owner.json("POST", f"{files}/directory", status=409, json={"path": "/world"})
    assert exists["error"]["code"] == "conflict"
    assert "node-1" not in exists["error"]["message"]


async def test_a_full_volume_is_a_507_not_a_node_failure(stack: Stack) -> None:
    server_id, owner = await stack.owned_server("hoarder@example.org")
    too_big = 2 * 1024 * 1024 * 1024  # the server's disk is 1 GiB

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 1024

    refused = await owner.json(
        "PUT",
        f"/api/v1/servers/{server_id}/files/upload?path=/big.bin&size={too_big}",
        status=507,
        data=body(),
    )
    assert refused["error"] == {
        "code": "insufficient_storage",
        "message": f"{too_big} bytes do not fit in the server's volume",
        "details": [],
    }


async def test_a_node_that_refuses_our_token_is_a_node_error(stack: Stack) -> None:
    server_id, owner = await stack.owned_server("stranded@example.org")
    trusted = stack.agent.trusted_keys
    stranger = SigningKey.generate()
    # The node is set up again, trusting another control plane's key only.
    await restart_agent(stack, {stranger.kid: stranger.public_text})
    try:
        listing = await owner.json("GET", f"/api/v1/servers/{server_id}/files/list", status=502)
        assert listing["error"]["code"] == "node_error"
        assert "refused our command" in listing["error"]["message"]
    finally:
        await restart_agent(stack, trusted)  # so that the server can be deleted


async def restart_agent(stack: Stack, trusted_keys: dict[str, str]) -> None:
    stack.agent.stop()
    stack.agent.trusted_keys = trusted_keys
    stack.agent.write_config()
    stack.agent.start()
    await stack.admin.json(
        "PATCH", f"/api/v1/nodes/{stack.node_id}", json={"url": stack.agent.base_url}
    )
