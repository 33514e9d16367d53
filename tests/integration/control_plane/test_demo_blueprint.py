"""The "Freeciv (demo)" blueprint as the repository has it, and how it is saved.

The file passes the checks of ``POST /api/v1/blueprints``, names the image the build script
makes, and tells the game its port; saving it again (each ``make run``) neither duplicates it
nor undoes an administrator's edit; a broken file is refused with the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import session_factory
from control_plane.db.models import AuditEntry, Blueprint
from control_plane.db.session import transaction
from control_plane.demo import (
    BLUEPRINT_FILE,
    IMAGE_SCRIPT,
    DemoUnavailable,
    ensure_demo_blueprint,
    load_demo_blueprint,
)


def test_the_demo_blueprint_names_the_built_image_and_the_servers_port() -> None:
    demo = load_demo_blueprint()

    built = re.search(r'readonly IMAGE="([^"]+)"', IMAGE_SCRIPT.read_text())
    assert built, "the build script no longer names its image"
    assert [image.image for image in demo.data.images] == [built[1]]
    assert demo.data.startup.startswith("/usr/games/freeciv-server --port {{SERVER_PORT}} ")
    assert demo.data.stop.model_dump() == {"type": "command", "value": "quit"}
    assert demo.startup_done == ["Now accepting new client connections"]
    assert demo.data.read_only_root


async def test_saving_the_demo_again_keeps_one_blueprint_and_the_admins_edit(
    engine: AsyncEngine,
) -> None:
    factory = session_factory(engine)
    async with transaction(factory) as db:
        first = await ensure_demo_blueprint(db)
        first.description = "our own words"
    async with transaction(factory) as db:
        again = await ensure_demo_blueprint(db)
        assert again.id == first.id

    async with transaction(factory) as db:
        rows = list(await db.scalars(select(Blueprint)))
        assert [(b.name, b.description) for b in rows] == [("Freeciv (demo)", "our own words")]
        assert rows[0].startup_done == ["Now accepting new client connections"]
        actions = list(await db.scalars(select(AuditEntry.action)))
        assert actions == ["blueprint.created"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"startup": "/usr/games/freeciv-server --port {{PORT}}"}, "undefined variables: PORT"),
        ({"startup_done": ["ready\n"]}, "startup_done"),
        ({"images": []}, "images"),
    ],
)
def test_a_broken_demo_blueprint_is_refused_with_the_reason(
    tmp_path: Path, change: dict[str, object], reason: str
) -> None:
    broken = tmp_path / "demo.json"
    broken.write_text(json.dumps({**json.loads(BLUEPRINT_FILE.read_text()), **change}))

    with pytest.raises(DemoUnavailable, match=r"is not a valid blueprint") as refused:
        load_demo_blueprint(broken)

    assert reason in str(refused.value)
