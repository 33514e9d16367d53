"""Request models of the Pterodactyl-compatible API, field for field as Pterodactyl names
them (docs/pterodactyl-compat.md says which only are kept and echoed)."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import ConfigDict, Field

from control_plane.api.compat.envelope import CompatQuery
from control_plane.schemas.common import Input
from control_plane.security.passwords import MAX_LENGTH, MIN_LENGTH

Text191 = Field(min_length=1, max_length=191)
# What an external id may hold: what its lookup path (``…/external/{external_id}``) can carry
# (no slash, no control character), so that every id accepted can be looked up.
EXTERNAL_ID: Final = r"^[^/\x00-\x1f\x7f]{1,191}$"


class UserQuery(CompatQuery):
    email: str | None = Field(None, alias="filter[email]", max_length=254)
    uuid: str | None = Field(None, alias="filter[uuid]", max_length=36)
    username: str | None = Field(None, alias="filter[username]", max_length=191)
    external_id: str | None = Field(None, alias="filter[external_id]", max_length=191)


class CompatUserCreate(Input):
    email: str = Field(min_length=3, max_length=254)
    username: str = Field(min_length=1, max_length=191)
    first_name: str = Field(min_length=1, max_length=191)
    last_name: str = Field(min_length=1, max_length=191)
    password: str | None = Field(None, min_length=MIN_LENGTH, max_length=MAX_LENGTH)
    external_id: str | None = Field(None, min_length=1, max_length=191, pattern=EXTERNAL_ID)
    root_admin: bool = False
    language: str = Field("en", max_length=5)


class CompatUserUpdate(Input):
    email: str | None = Field(None, min_length=3, max_length=254)
    username: str | None = Field(None, min_length=1, max_length=191)
    first_name: str | None = Field(None, min_length=1, max_length=191)
    last_name: str | None = Field(None, min_length=1, max_length=191)
    password: str | None = Field(None, min_length=MIN_LENGTH, max_length=MAX_LENGTH)
    external_id: str | None = Field(None, min_length=1, max_length=191, pattern=EXTERNAL_ID)
    root_admin: bool | None = None
    language: str | None = Field(None, max_length=5)


class ServerQuery(CompatQuery):
    name: str | None = Field(None, alias="filter[name]", max_length=191)
    uuid: str | None = Field(None, alias="filter[uuid]", max_length=36)
    identifier: str | None = Field(None, alias="filter[uuidShort]", max_length=8)
    external_id: str | None = Field(None, alias="filter[external_id]", max_length=191)
    image: str | None = Field(None, alias="filter[image]", max_length=255)


class DeployableQuery(CompatQuery):
    memory: int = Field(0, ge=0)
    disk: int = Field(0, ge=0)
    location_ids: list[int] = Field(default_factory=list, alias="location_ids[]", max_length=64)


class Limits(Input):
    memory: int = Field(ge=0)
    swap: int = Field(ge=0)  # -1 (unlimited swap) is refused: every server has limits
    disk: int = Field(ge=0)
    io: int | None = Field(500, ge=10, le=1000)
    cpu: int = Field(ge=0)
    threads: str | None = Field(None, max_length=191, pattern=r"^[0-9-,]+$")
    oom_disabled: bool | None = None


class FeatureLimits(Input):
    databases: int | None = Field(None, ge=0)
    allocations: int | None = Field(None, ge=0, le=2_147_483_647)  # servers.port_limit
    backups: int | None = Field(None, ge=0)


class AllocationChoice(Input):
    default: int = Field(ge=1)
    additional: list[int] = Field(default_factory=list, max_length=32)


class Deploy(Input):
    locations: list[int] = Field(default_factory=list, max_length=64)
    dedicated_ip: bool = False
    port_range: list[str] = Field(default_factory=list, max_length=32)


class CompatServerCreate(Input):
    external_id: str | None = Field(None, min_length=1, max_length=191, pattern=EXTERNAL_ID)
    name: str = Field(min_length=1, max_length=64)
    description: str | None = Field(None, max_length=2048)
    user: int = Field(ge=1)
    egg: int = Field(ge=1)
    docker_image: str | None = Field(None, max_length=255)
    startup: str | None = Field(None, max_length=4096)
    environment: dict[str, str | int | float | bool | None] = Field(max_length=64)
    skip_scripts: bool = False
    oom_disabled: bool | None = None
    limits: Limits
    feature_limits: FeatureLimits
    allocation: AllocationChoice | None = None
    deploy: Deploy | None = None
    start_on_completion: bool = False


class ServerDetails(Input):
    name: str = Field(min_length=1, max_length=64)
    user: int = Field(ge=1)
    external_id: str | None = Field(None, min_length=1, max_length=191, pattern=EXTERNAL_ID)
    description: str | None = Field(None, max_length=2048)


class ServerBuild(Input):
    allocation: int | None = Field(None, ge=1)
    memory: int | None = Field(None, ge=0)
    swap: int | None = Field(None, ge=0)
    disk: int | None = Field(None, ge=0)
    io: int | None = Field(None, ge=10, le=1000)
    cpu: int | None = Field(None, ge=0)
    threads: str | None = Field(None, max_length=191, pattern=r"^[0-9-,]+$")
    oom_disabled: bool | None = None
    limits: Limits | None = None
    feature_limits: FeatureLimits | None = None
    add_allocations: list[int] = Field(default_factory=list, max_length=32)
    remove_allocations: list[int] = Field(default_factory=list, max_length=32)


class ServerStartup(Input):
    startup: str | None = Field(None, max_length=4096)
    environment: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, max_length=64
    )
    egg: int | None = Field(None, ge=1)
    image: str | None = Field(None, max_length=255)
    skip_scripts: bool = False


class PowerSignal(Input):
    signal: Literal["start", "stop", "restart", "kill"]


class ConsoleCommand(Input):
    command: str = Field(min_length=1, max_length=1024)


class ClientServersQuery(CompatQuery):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    type: str | None = Field(None, max_length=16)
