"""Blueprints: stored as validated JSON."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Blueprint, Server
from control_plane.errors import Conflict
from control_plane.schemas.blueprints import BlueprintCreate
from control_plane.services import records


def _columns(data: BlueprintCreate) -> dict[str, object]:
    dumped = data.model_dump(mode="json")
    return {
        "name": dumped["name"],
        "description": dumped["description"],
        "images": dumped["images"],
        "startup": dumped["startup"],
        "stop": dumped["stop"],
        "install": dumped["install"],
        "variables": dumped["variables"],
        "read_only_root": dumped["read_only_root"],
        "file_denylist": dumped["file_denylist"],
        "config_files": dumped["config_files"],
        "startup_done": dumped["startup_done"],
        "image_command": dumped["image_command"],
        "features": dumped["features"],
        "author": dumped["author"],
    }


async def list_blueprints(db: AsyncSession) -> list[Blueprint]:
    return await records.listed(db, Blueprint, Blueprint.name)


async def get_blueprint(db: AsyncSession, blueprint_id: uuid.UUID) -> Blueprint:
    return await records.get_or_404(db, Blueprint, blueprint_id, "blueprint")


async def find_blueprint(
    db: AsyncSession, *, egg_uuid: str | None = None, name: str | None = None
) -> Blueprint | None:
    """The blueprint imported from the egg ``egg_uuid``, or else the one called ``name``."""
    column, value = (Blueprint.egg_uuid, egg_uuid) if egg_uuid else (Blueprint.name, name)
    if value is None:
        return None
    return (await db.execute(select(Blueprint).where(column == value))).scalar_one_or_none()


async def save_blueprint(
    db: AsyncSession,
    data: BlueprintCreate,
    blueprint: Blueprint | None = None,
    *,
    egg_uuid: str | None = None,
) -> Blueprint:
    """Create (``blueprint`` None) or replace a blueprint; ``egg_uuid``, from an import, ties
    it to its egg (a replace without one keeps the blueprint's)."""
    target = blueprint or Blueprint()
    for column, value in _columns(data).items():
        setattr(target, column, value)
    if egg_uuid is not None:
        target.egg_uuid = egg_uuid
    if blueprint is None:
        db.add(target)
    try:
        await db.flush()
    except IntegrityError as err:
        raise Conflict(
            f"a blueprint named {data.name!r} exists already"
            + (" (or one imported from the same egg)" if egg_uuid else "")
        ) from err
    return target


async def delete_blueprint(db: AsyncSession, blueprint_id: uuid.UUID) -> Blueprint:
    in_use = "servers still use this blueprint"
    return await records.delete_if_unused(
        db, Blueprint, blueprint_id, "blueprint", [(Server.blueprint_id, in_use)]
    )
