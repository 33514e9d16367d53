"""The file API's path limit, at its boundary, through the control plane and a real agent.

A path travels to the node percent-encoded in the query string of a signed request, so the
file API accepts only paths whose longest encoding still fits the command token's ``htu``.
The longest such path works on every route; one byte more is a 400 from the control plane,
before anything is signed or sent.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from shared.files_api import MAX_PATH_BYTES
from tests.integration.control_plane.stack import Stack

pytestmark = pytest.mark.docker
NAME_BYTES = 255


def path_of(total_bytes: int) -> str:
    """``/a/b/…`` of exactly ``total_bytes`` UTF-8 bytes, encoded at 3 characters a byte."""
    parts: list[str] = []
    left = total_bytes
    while left > 0:
        size = min(NAME_BYTES, left - 1)  # one byte for the "/" before it
        # Four-byte characters and "%": every byte of them is percent-encoded.
        parts.append("\U0001f600" * (size // 4) + "%" * (size % 4))
        left -= size + 1
    path = "/" + "/".join(parts)
    assert len(path.encode()) == total_bytes
    return path


def file_requests(stack: Stack) -> list[str]:
    """The file API requests the agent got."""
    return [
        e["path"]
        for e in stack.agent.log_events()
        if e.get("event") == "request" and "/files" in str(e.get("path"))
    ]


async def test_the_longest_accepted_path_works_on_every_route(stack: Stack) -> None:
    server_id, owner = await stack.owned_server("deep@example.org")
    files = f"/api/v1/servers/{server_id}/files"
    path = path_of(MAX_PATH_BYTES)
    parent, _, name = path.rpartition("/")
    ancestors = parent.split("/")[1:]
    for depth in range(1, len(ancestors) + 1):
        made = "/" + "/".join(ancestors[:depth])
        await owner.json("POST", f"{files}/directory", status=201, json={"path": made})

    data = b"deep down\n"
    uploaded = await owner.json(
        "PUT",
        f"{files}/upload",
        params={"path": path, "size": str(len(data))},
        data=io.BytesIO(data),
    )
    assert (uploaded["path"], uploaded["size"]) == (path, len(data))
    read = await owner.request("GET", f"{files}/contents", params={"path": path})
    assert read.status == 200
    assert await read.read() == data
    await owner.json("PUT", f"{files}/contents", params={"path": path}, data=b"edited\n")
    listing = await owner.json("GET", f"{files}/list", params={"path": parent})
    assert [(e["name"], e["size"]) for e in listing["entries"]] == [(name, len(b"edited\n"))]


async def test_a_path_one_byte_longer_is_refused_before_the_node_sees_it(stack: Stack) -> None:
    server_id, owner = await stack.owned_server("deeper@example.org")
    files = f"/api/v1/servers/{server_id}/files"
    path = path_of(MAX_PATH_BYTES + 1)
    # Only file requests count: the control plane's health checks and its read of each
    # server when it (re)follows the node's events come when they come.
    sent_before = len(file_requests(stack))

    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "contents", {"params": {"path": path}}),
        ("PUT", "contents", {"params": {"path": path}, "data": b"x"}),
        ("PUT", "upload", {"params": {"path": path, "size": "1"}, "data": b"x"}),
        ("GET", "list", {"params": {"path": path}}),
        ("POST", "directory", {"json": {"path": path}}),
    ]
    for method, route, kwargs in attempts:
        refused = await owner.json(method, f"{files}/{route}", status=400, **kwargs)
        assert refused["error"]["code"] == "invalid_request", route
        [detail] = refused["error"]["details"]
        assert detail["loc"] == ["path"], route
        assert f"{MAX_PATH_BYTES} bytes" in detail["msg"], route
    assert len(file_requests(stack)) == sent_before
