"""Two limit increases at once on one node (ours and Pterodactyl's build route): the room was
checked in a read, the node told, the limits stored, with no lock between — both took the
last room, and the node was promised more memory than it has. Against a real agent (its
spec updates take long enough for the two to overlap)."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.control_plane.stack import Stack
from tests.support.compat import pterodactyl_key

pytestmark = pytest.mark.docker


async def test_two_increases_at_once_cannot_both_take_a_nodes_last_room(stack: Stack) -> None:
    await stack.admin.json("PATCH", f"/api/v1/nodes/{stack.node_id}", json={"memory_mib": 1600})
    first, _ = await stack.owned_server("first@example.org")
    second, _ = await stack.owned_server("second@example.org")  # 512 MiB each (stack.py)

    answers = await asyncio.gather(
        *(
            stack.admin.request(
                "PATCH", f"/api/v1/servers/{server_id}/limits", json={"memory_mib": 1024}
            )
            for server_id in (first, second)
        )
    )

    assert sorted(answer.status for answer in answers) == [200, 409], answers
    refused = next(answer for answer in answers if answer.status == 409)
    assert "not enough memory left" in (await refused.json())["error"]["message"]
    servers = [await stack.admin.json("GET", f"/api/v1/servers/{s}") for s in (first, second)]
    assert sorted(server["limits"]["memory_mib"] for server in servers) == [512, 1024]

    # Pterodactyl's build route goes through the same decision (both at 512 MiB again).
    for server_id in (first, second):
        await stack.admin.json(
            "PATCH", f"/api/v1/servers/{server_id}/limits", json={"memory_mib": 512}
        )
    application = await pterodactyl_key(stack.panel, stack.admin, "application")
    numbers = []
    for server_id in (first, second):
        found = await application.json("GET", f"/api/application/servers?filter[uuid]={server_id}")
        numbers.append(found["data"][0]["attributes"]["id"])
    build = {"memory": 1024, "swap": 0, "disk": 1024, "cpu": 100}
    builds = await asyncio.gather(
        *(
            application.request(
                "PATCH",
                f"/api/application/servers/{number}/build",
                json=build,
            )
            for number in numbers
        )
    )
    assert sorted(answer.status for answer in builds) == [200, 400], builds


async def test_a_build_that_names_only_the_memory_keeps_the_swap(stack: Stack) -> None:
    """Pterodactyl's build keeps what it is not sent; swap was set to 0 when left out."""
    server_id, _ = await stack.owned_server("swap@example.org")
    await stack.admin.json("PATCH", f"/api/v1/servers/{server_id}/limits", json={"swap_mib": 256})
    application = await pterodactyl_key(stack.panel, stack.admin, "application")
    found = await application.json("GET", f"/api/application/servers?filter[uuid]={server_id}")
    number = found["data"][0]["attributes"]["id"]

    built = await application.json(
        "PATCH", f"/api/application/servers/{number}/build", json={"memory": 640}
    )

    assert (built["attributes"]["limits"]["memory"], built["attributes"]["limits"]["swap"]) == (
        640,
        256,
    )
