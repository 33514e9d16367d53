"""After a root installer the agent, as root, gives the volume to the game user while the
file API and SFTP stay open. Walked by path, two renames by the owner at the right moment (a
directory the walk was in, swapped for one holding a symlink the game planted) made it change
the owner of files outside the volume. Run as root, as the agent is; the file layer's own
rename does the owner's part, from another thread, as a request would."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from node_agent.files import tree
from node_agent.files.confine import open_root
from node_agent.storage.volume import chown_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changes owners: needs root")

GAME = 1000
EMPTY_DIRECTORIES = 20_000  # the walk's slow part, while the owner renames


def test_renames_during_the_walk_cannot_make_it_change_anything_outside(tmp_path: Path) -> None:
    host = tmp_path / "host"  # stands for the host's /
    (host / "etc").mkdir(parents=True)
    shadow = host / "etc" / "shadow"
    shadow.write_text("root:$6$secret\n")
    volume = tmp_path / "volume"
    inside = volume / "q" / "y"
    inside.mkdir(parents=True)
    for number in range(EMPTY_DIRECTORIES):
        (inside / f"d{number:05}").mkdir()
    (inside / "etc").mkdir()  # a real directory named as the target
    (volume / "x").mkdir()
    (volume / "x" / "y").symlink_to(host)  # planted by the game
    for path in [volume, *volume.rglob("*")]:
        os.lchown(path, 0, 0)  # as a root installer leaves them
    last = inside / os.listdir(inside)[-1]  # the last a walk by path changes there
    renamed = threading.Event()

    def owner_renames() -> None:
        # Once the walk has reached the end of q/y's entries: what the owner's two rename
        # requests do, in the agent's own file layer.
        deadline = time.monotonic() + 60
        while os.lstat(last).st_uid != GAME and time.monotonic() < deadline:
            time.sleep(0.0005)
        root = open_root(volume)
        try:
            tree.rename(root, ("q",), ("q_old",))
            tree.rename(root, ("x",), ("q",))
        finally:
            os.close(root)
        renamed.set()

    owner = threading.Thread(target=owner_renames)
    owner.start()
    chown_tree(volume, GAME, GAME)
    owner.join()

    assert renamed.is_set()
    assert (shadow.stat().st_uid, shadow.stat().st_gid) == (0, 0)
    assert os.lstat(host / "etc").st_uid == 0
    # What was in the volume all along is the game user's.
    assert os.lstat(volume / "q_old" / "y" / "d00000").st_uid == GAME
