"""Blueprints: stored as validated JSON."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Blueprint, Server
from control_plane.errors import Conflict, NotFound
from control_plane.schemas.blueprints import BlueprintCreate


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
    }


async def get_blueprint(db: AsyncSession, blueprint_id: uuid.UUID) -> Blueprint:
    blueprint = await db.get(Blueprint, blueprint_id)
    if blueprint is None:
        raise NotFound("no such blueprint")
    return blueprint


async def save_blueprint(
    db: AsyncSession, data: BlueprintCreate, blueprint: Blueprint | None = None
) -> Blueprint:
    target = blueprint or Blueprint()
    for column, value in _columns(data).items():
        setattr(target, column, value)
    if blueprint is None:
        db.add(target)
    try:
        await db.flush()
    except IntegrityError as err:
        raise Conflict(f"a blueprint named {data.name!r} exists already") from err
    return target


async def delete_blueprint(db: AsyncSession, blueprint_id: uuid.UUID) -> Blueprint:
    blueprint = await get_blueprint(db, blueprint_id)
    if await db.scalar(select(func.count()).where(Server.blueprint_id == blueprint_id)):
        raise Conflict("servers still use this blueprint")
    await db.delete(blueprint)
    return blueprint
