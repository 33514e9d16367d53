"""Blueprints: images, startup command with ``{{VARIABLE}}`` placeholders, variables, install."""

from __future__ import annotations

import datetime as dt
import re
import shlex
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from control_plane.schemas.common import Input, Output
from shared.server_spec import (
    DEFAULT_INSTALL_TIMEOUT_SECONDS,
    ENV_NAME,
    MAX_ARG_LENGTH,
    MAX_ARGS,
    MAX_CONFIG_FILES,
    MAX_DENYLIST_PATTERNS,
    MAX_DONE_MARKERS,
    RESERVED_ENV_NAMES,
    RESERVED_ENV_PREFIXES,
    ConfigFile,
    ConsoleMarker,
    DenyPattern,
    ImageReference,
    StopCommand,
    StopSignal,
)

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MAX_VALUE_LENGTH: Final = 4096
# ASCII digits only: Python's \d also takes other scripts' digits (int() reads "٣" as 3).
_INTEGER: Final = re.compile(r"-?[0-9]{1,18}")
BUILT_INS: Final = ("SERVER_MEMORY", "SERVER_IP", "SERVER_PORT")
# The built-in placeholders at their longest (a spec's memory, an allocation's address, a
# port): a blueprint whose defaults fit with these fits every server.
_LONGEST_BUILT_INS: Final = {
    "SERVER_MEMORY": "1048576",
    "SERVER_IP": "f" * 45,
    "SERVER_PORT": "65535",
}


def value_problem(variable: Mapping[str, Any], value: str) -> str | None:
    """What is wrong with ``value`` for the blueprint variable ``variable``, or None.

    ``variable`` is a :class:`BlueprintVariable` as stored (a dict). An empty value is
    refused only if required; it is not checked further.
    """
    if len(value) > MAX_VALUE_LENGTH:
        return f"at most {MAX_VALUE_LENGTH} characters"
    if "\x00" in value:
        return "must not contain NUL"
    if value == "":
        return "required" if variable.get("required") else None
    kind = variable.get("type", "string")
    if kind == "integer":
        if not _INTEGER.fullmatch(value):
            return "must be a whole number"
        number = int(value)
        if variable.get("min") is not None and number < variable["min"]:
            return f"must be at least {variable['min']}"
        if variable.get("max") is not None and number > variable["max"]:
            return f"must be at most {variable['max']}"
    elif kind == "boolean":
        if value not in {"true", "false", "0", "1"}:
            return "must be true or false"
    else:
        if variable.get("min") is not None and len(value) < variable["min"]:
            return f"must be at least {variable['min']} characters"
        if variable.get("max") is not None and len(value) > variable["max"]:
            return f"must be at most {variable['max']} characters"
    regex = variable.get("regex")
    # ASCII \d, \w, \s and \b, as eggs mean them (PHP's PCRE without /u).
    if regex and not re.fullmatch(regex, value, re.ASCII):
        return "does not match the required pattern"
    return None


def startup_words(template: str) -> list[str]:
    """The startup template split into its arguments, placeholders not yet filled in.

    ValueError if it cannot be split (an unbalanced quote) or has too many arguments;
    filling placeholders in never adds arguments, so this count is the command's.
    """
    try:
        words = shlex.split(template)
    except ValueError as err:
        raise ValueError(f"cannot be split into arguments: {err}") from err
    if len(words) > MAX_ARGS:
        raise ValueError(f"splits into {len(words)} arguments, at most {MAX_ARGS}")
    return words


def fill_placeholders(words: list[str], values: Mapping[str, str]) -> list[str]:
    """Each argument with its placeholders replaced by their values (unknown ones: empty)."""
    return [PLACEHOLDER.sub(lambda m: values.get(m[1], ""), word) for word in words]


def too_long(arguments: list[str]) -> list[int]:
    """The positions of the arguments longer than a node takes."""
    return [index for index, argument in enumerate(arguments) if len(argument) > MAX_ARG_LENGTH]


class BlueprintImage(Input):
    name: str = Field(min_length=1, max_length=64)
    image: ImageReference


class BlueprintVariable(Input):
    """One setting of the game, given to it as an environment variable."""

    env: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=64)
    description: str = Field("", max_length=1000)
    type: Literal["string", "integer", "boolean"] = "string"
    default: str = Field("", max_length=MAX_VALUE_LENGTH)
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
                re.compile(value, re.ASCII)
            except re.error as err:
                raise ValueError(f"not a valid regular expression: {err}") from err
        return value

    @model_validator(mode="after")
    def _bounds(self) -> BlueprintVariable:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        if self.user_editable and not self.user_viewable:
            raise ValueError("a variable users can edit must be visible to them")
        # Every server starts with the default: it must pass the rules servers' values do.
        # An empty one of a required variable means that the administrator gives one.
        problem = value_problem(self.model_dump(), self.default) if self.default else None
        if problem:
            raise ValueError(f"default: {problem}")
        return self


class BlueprintInstall(Input):
    image: ImageReference
    entrypoint: str = Field("/bin/sh", min_length=1, max_length=255, pattern=r"^/\S+$")
    script: str = Field(min_length=1, max_length=64 * 1024)
    needs_root: bool = False
    # Where the install container sees the server's volume (eggs' scripts use /mnt/server).
    volume_path: Literal["/home/container", "/mnt/server"] = "/home/container"
    timeout_seconds: int = Field(DEFAULT_INSTALL_TIMEOUT_SECONDS, ge=1, le=6 * 3600)


# An egg's feature flags ("eula", "java_version" …): kept for export and for the panel.
Feature = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
MAX_FEATURES: Final = 32


class BlueprintCreate(Input):
    name: str = Field(min_length=1, max_length=64)
    description: str = Field("", max_length=4000)
    images: list[BlueprintImage] = Field(min_length=1, max_length=16)
    # True: the image's own command runs and reads the startup text from ``STARTUP`` (images
    # made for eggs); the startup is then never split into arguments here. Declared before
    # ``startup``, whose check reads it.
    image_command: bool = False
    startup: str = Field(min_length=1, max_length=4096)
    stop: StopCommand | StopSignal = Field(discriminator="type")
    install: BlueprintInstall | None = None
    variables: list[BlueprintVariable] = Field(default_factory=list, max_length=64)
    read_only_root: bool = True
    # gitignore-style patterns of paths the file API never touches (node_agent/files/).
    file_denylist: list[DenyPattern] = Field(default_factory=list, max_length=MAX_DENYLIST_PATTERNS)
    # Keys the agent sets in the game's configuration files before each start.
    config_files: list[ConfigFile] = Field(default_factory=list, max_length=MAX_CONFIG_FILES)
    # Console text that says the game is up (``regex:`` for an expression); none: up once
    # its container runs.
    startup_done: list[ConsoleMarker] = Field(default_factory=list, max_length=MAX_DONE_MARKERS)
    features: list[Feature] = Field(default_factory=list, max_length=MAX_FEATURES)
    author: str = Field("", max_length=255)

    @field_validator("startup")
    @classmethod
    def _splits(cls, value: str, info: ValidationInfo) -> str:
        if not info.data.get("image_command"):
            startup_words(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BlueprintCreate:
        names = [v.env for v in self.variables]
        if len(set(names)) != len(names):
            raise ValueError("variable names must be unique")
        known = set(names) | set(BUILT_INS)
        unknown = sorted(set(PLACEHOLDER.findall(self.startup)) - known)
        if unknown:
            raise ValueError(f"startup uses undefined variables: {', '.join(unknown)}")
        if self.image_command:
            return self
        defaults = {v.env: v.default for v in self.variables} | _LONGEST_BUILT_INS
        if long := too_long(fill_placeholders(startup_words(self.startup), defaults)):
            raise ValueError(
                f"startup argument {long[0]} is longer than {MAX_ARG_LENGTH} characters with "
                "the variables' defaults"
            )
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
    config_files: list[dict[str, object]]
    startup_done: list[str]
    image_command: bool
    features: list[str]
    # The uuid of the egg it was imported from (set by import, never by hand).
    egg_uuid: str | None
    author: str
    created_at: dt.datetime


class BlueprintList(Output):
    data: list[BlueprintOut]
