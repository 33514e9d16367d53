"""A server deletion refused because a backup is being made (409) deletes no backup.

The deletion deleted the server's backups on the node one by one, oldest first, and met the
one being made last: 409, the server stayed — without the older backups, whose files were
gone while their records still listed them (a download or restore then failed). A nightly
backup running while an administrator deleted the server was enough.
"""

from __future__ import annotations

import os

import pytest

from tests.integration.control_plane.stack import Stack, wait_for_backup

pytestmark = pytest.mark.docker


async def test_a_deletion_refused_for_a_running_backup_leaves_every_backup(
    stack: Stack,
) -> None:
    server_id, owner = await stack.owned_server("keeps@example.org")
    backups = f"/api/v1/servers/{server_id}/backups"
    volume = stack.volume(server_id)
    (volume / "world.dat").write_bytes(b"the world\n")
    kept = await owner.json("POST", backups, status=202, json={"name": "nightly 1"})
    assert (await wait_for_backup(owner, f"{backups}/{kept['id']}"))["status"] == "completed"
    # Big enough that the next backup is still being made when the deletion comes.
    (volume / "region.mca").write_bytes(os.urandom(300 * 1024 * 1024))
    running = await owner.json("POST", backups, status=202, json={"name": "nightly 2"})

    refused = await stack.admin.request("DELETE", f"/api/v1/servers/{server_id}")
    in_progress = await owner.json("GET", f"{backups}/{running['id']}")

    assert in_progress["status"] == "running", "the backup ended too soon for this test"
    assert refused.status == 409, await refused.text()
    await owner.json("GET", f"/api/v1/servers/{server_id}")
    await wait_for_backup(owner, f"{backups}/{running['id']}", timeout=120)
    # The older backup is whole: its file is still on the node, so it still downloads.
    download = await owner.request("GET", f"{backups}/{kept['id']}/download")
    assert download.status == 200, await download.text()
    await download.read()
