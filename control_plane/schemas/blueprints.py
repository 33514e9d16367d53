"""Blueprints: images, startup command with ``{{VARIABLE}}`` placeholders, variables, install."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Literal

from pydantic import Field, field_validator, model_validator

from control_plane.schemas.common import Input, Output
from shared.server_spec import (
    ENV_NAME,
    MAX_DENYLIST_PATTERNS,
    RESERVED_ENV_NAMES,
    RESERVED_ENV_PREFIXES,
    DenyPattern,
    ImageReference,
    StopCommand,
    StopSignal,
)

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class BlueprintImage(Input):
    name: str = Field(min_length=1, max_length=64)
    image: ImageReference


class BlueprintVariable(Input):
    """One setting of the game, given to it as an environment variable."""

    env: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=64)
    description: str = Field("", max_length=1000)
    type: Literal["string", "integer", "boolean"] = "string"
    default: str = Field("", max_length=4096)
    required: bool = False
    regex: str | None = Field(None, max_length=512)
    min: int | None = None
    max: int | None = None
    user_viewable: bool = True
    user_editable: bool = False

    @field_validator("env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not ENV_NAME.fullmatch(value):
            raise ValueError("must be a valid environment variable name")
        if value in RESERVED_ENV_NAMES or value.startswith(RESERVED_ENV_PREFIXES):
            raise ValueError(f"{value} is reserved")
        return value

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"not a valid regular expression: {err}") from err
        return value

    @model_validator(mode="after")
    def _bounds(self) -> BlueprintVariable:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        if self.user_editable and not self.user_viewable:
            raise ValueError("a variable users can edit must be visible to them")
        return self


class BlueprintInstall(Input):
    image: ImageReference
    entrypoint: str = Field("/bin/sh", min_length=1, max_length=255, pattern=r"^/\S+$")
    script: str = Field(min_length=1, max_length=64 * 1024)
    needs_root: bool = False


class BlueprintCreate(Input):
    name: str = Field(min_length=1, max_length=64)
    description: str = Field("", max_length=4000)
    images: list[BlueprintImage] = Field(min_length=1, max_length=16)
    startup: str = Field(min_length=1, max_length=4096)
    stop: StopCommand | StopSignal = Field(discriminator="type")
    install: BlueprintInstall | None = None
    variables: list[BlueprintVariable] = Field(default_factory=list, max_length=64)
    read_only_root: bool = True
    # gitignore-style patterns of paths the file API never touches (node_agent/files/).
    file_denylist: list[DenyPattern] = Field(default_factory=list, max_length=MAX_DENYLIST_PATTERNS)

    @model_validator(mode="after")
    def _consistent(self) -> BlueprintCreate:
        names = [v.env for v in self.variables]
        if len(set(names)) != len(names):
            raise ValueError("variable names must be unique")
        known = set(names) | {"SERVER_PORT", "SERVER_IP", "SERVER_MEMORY"}
        unknown = sorted(set(PLACEHOLDER.findall(self.startup)) - known)
        if unknown:
            raise ValueError(f"startup uses undefined variables: {', '.join(unknown)}")
        return self


class BlueprintUpdate(BlueprintCreate):
    """A blueprint is replaced whole; running servers pick the change up at their next start."""


class BlueprintOut(Output):
    id: uuid.UUID
    name: str
    description: str
    images: list[dict[str, str]]
    startup: str
    stop: dict[str, str]
    install: dict[str, object] | None
    variables: list[dict[str, object]]
    read_only_root: bool
    file_denylist: list[str]
    created_at: dt.datetime


class BlueprintList(Output):
    data: list[BlueprintOut]
