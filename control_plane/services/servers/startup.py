"""A server's startup: its variables under the blueprint's rules, the command made of them
(split first, never given to a shell), and the spec the node gets."""

from __future__ import annotations

import uuid
from typing import Final

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Allocation, Blueprint, Server
from control_plane.errors import InvalidRequest, NotFound
from control_plane.schemas.blueprints import (
    PLACEHOLDER,
    fill_placeholders,
    startup_words,
    too_long,
)
from control_plane.services.servers.placement import ServerLimits, allocations_of
from shared.errors import ErrorDetail
from shared.server_spec import MAX_ARG_LENGTH, InstallSpec, ServerSpec

# Shown in place of a value the caller may not see (the startup command of owners, sub-users).
HIDDEN_VALUE: Final = "********"


def render_startup(template: str, values: dict[str, str]) -> list[str]:
    """Split the template into arguments first, then fill placeholders inside each one.

    A value can therefore never add arguments (no argument injection), and no shell ever
    reads the result. 400 if the template cannot be split or has too many arguments (a
    blueprint saved before these were checked).
    """
    try:
        words = startup_words(template)
    except ValueError as err:
        raise InvalidRequest(f"the blueprint's startup command {err}") from err
    return fill_placeholders(words, values)


def blueprint_command(blueprint: Blueprint, values: dict[str, str]) -> list[str]:
    """The command as the game gets it: the template's arguments with placeholders filled in,
    or, for a blueprint whose image runs its own command (it reads ``STARTUP`` and fills the
    placeholders from its environment), that text with them filled in as one line, for
    showing only."""
    if blueprint.image_command:
        return [PLACEHOLDER.sub(lambda m: values.get(m[1], ""), blueprint.startup)]
    return render_startup(blueprint.startup, values)


def _check_lengths(arguments: list[str]) -> None:
    """400 naming each argument that the values made longer than a node takes."""
    problems = [
        ErrorDetail(
            loc=["startup", index],
            msg=f"longer than {MAX_ARG_LENGTH} characters once its placeholders are filled in",
            type="value_error",
        )
        for index in too_long(arguments)
    ]
    if problems:
        raise InvalidRequest("the startup command would be too long", details=problems)


def _placeholder_values(
    server: Server,
    variables: dict[str, str],
    allocations: list[Allocation],
    memory_mib: int | None = None,
) -> dict[str, str]:
    """What each placeholder of the startup command stands for: the variables, then the
    built-ins."""
    primary = allocations[0] if allocations else None
    return {
        **variables,
        "SERVER_MEMORY": str(server.memory_mib if memory_mib is None else memory_mib),
        "SERVER_IP": primary.ip if primary else "",
        "SERVER_PORT": str(primary.port) if primary else "",
    }


def current_values(blueprint: Blueprint, server: Server) -> dict[str, str]:
    """The server's value of each of the blueprint's variables as the blueprint is now.

    A variable added to the blueprint since the server's values were set has its default;
    one removed is left out. The stored values themselves are never changed here.
    """
    return {
        variable["env"]: server.variables.get(variable["env"], str(variable.get("default", "")))
        for variable in blueprint.variables
    }


async def shown_startup(
    db: AsyncSession, server: Server, blueprint: Blueprint, *, reveal_hidden: bool
) -> list[str]:
    """The server's startup command as a caller sees it: unless ``reveal_hidden``, the value
    of every variable users may not see is :data:`HIDDEN_VALUE` (as in the variables list,
    which leaves such variables out)."""
    variables = dict(server.variables)
    if not reveal_hidden:
        for variable in blueprint.variables:
            if not variable.get("user_viewable"):
                variables[variable["env"]] = HIDDEN_VALUE
    allocations = await allocations_of(db, server.id)
    return blueprint_command(blueprint, _placeholder_values(server, variables, allocations))


async def build_spec(
    db: AsyncSession,
    server: Server,
    *,
    image: str | None = None,
    variables: dict[str, str] | None = None,
    limits: ServerLimits | None = None,
    main_port: uuid.UUID | None = None,
) -> ServerSpec:
    """The node's view of the server: what the agent's create (and spec update) carries.

    ``image``, ``variables``, ``limits`` and ``main_port`` (one of its allocations as the
    main one) stand in for the server's own, for a change that is not stored yet (it is sent
    to the node first).
    """
    blueprint = await db.get(Blueprint, server.blueprint_id)
    if blueprint is None:
        raise NotFound("the server's blueprint no longer exists")
    allocations = await allocations_of(db, server.id)
    if main_port is not None:  # first, then the others by port (as once stored)
        allocations.sort(key=lambda a: (a.id != main_port, a.port))
    if variables is None:
        variables = current_values(blueprint, server)
    values = _placeholder_values(
        server, variables, allocations, None if limits is None else limits.memory_mib
    )
    # An image that runs its own command gets no arguments: it reads STARTUP (the template)
    # and the values from its environment.
    startup = [] if blueprint.image_command else render_startup(blueprint.startup, values)
    _check_lengths(startup)
    try:
        return _spec(server, blueprint, image, startup, variables, allocations, limits)
    except ValidationError as err:
        # What no earlier check covers (a blueprint saved by an older version, server
        # limits configured past a node's): a 400 naming the fields, never their values.
        raise InvalidRequest.from_validation(
            err, "the server's specification is not valid"
        ) from err


def _spec(
    server: Server,
    blueprint: Blueprint,
    image: str | None,
    startup: list[str],
    variables: dict[str, str],
    allocations: list[Allocation],
    limits: ServerLimits | None = None,
) -> ServerSpec:
    if limits is None:
        limits = ServerLimits(
            server.memory_mib,
            server.swap_mib,
            server.cpu_percent,
            server.disk_mib,
            server.pids_limit,
        )
    install = (
        InstallSpec.model_validate(blueprint.install) if blueprint.install is not None else None
    )
    return ServerSpec.model_validate(
        {
            "uuid": server.id,
            "image": server.image if image is None else image,
            "startup": startup,
            "environment": dict(variables),
            "memory_mib": limits.memory_mib,
            "swap_mib": limits.swap_mib,
            "cpu_percent": limits.cpu_percent,
            "disk_mib": limits.disk_mib,
            "pids_limit": limits.pids_limit,
            "allocations": [
                {"ip": a.ip, "port": a.port, "protocols": ["tcp", "udp"]} for a in allocations
            ],
            "stop": blueprint.stop,
            "stop_timeout_seconds": blueprint.stop_timeout_seconds,
            "read_only_root": blueprint.read_only_root,
            "install": install,
            "file_denylist": blueprint.file_denylist,
            "config_files": blueprint.config_files,
            "startup_done": blueprint.startup_done,
            # The template with its placeholders unfilled: values reach the game only as
            # environment variables, each checked by its rules.
            "startup_template": blueprint.startup,
            "image_command": blueprint.image_command,
            "revision": server.spec_revision,
        }
    )
