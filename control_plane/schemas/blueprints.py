"""Blueprints: images, startup command with ``{{VARIABLE}}`` placeholders, variables, install."""

from __future__ import annotations

import datetime as dt
import re
import shlex
import uuid
from collections.abc import Mapping
from typing import Annotated, Final, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from control_plane.schemas.common import Input, Output
from control_plane.schemas.value_formats import Format
from control_plane.schemas.variable_values import (
    MAX_VALUE_LENGTH,
    compile_pattern,
    show_number,
    value_problem,
)
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
BUILT_INS: Final = ("SERVER_MEMORY", "SERVER_IP", "SERVER_PORT")
# The built-in placeholders at their longest (a spec's memory, an allocation's address, a
# port): a blueprint whose defaults fit with these fits every server.
_LONGEST_BUILT_INS: Final = {
    "SERVER_MEMORY": "1048576",
    "SERVER_IP": "f" * 45,
    "SERVER_PORT": "65535",
}


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


Option = Annotated[str, Field(max_length=MAX_VALUE_LENGTH)]
Affix = Annotated[str, Field(min_length=1, max_length=MAX_VALUE_LENGTH)]
Length = Annotated[int, Field(ge=0, le=MAX_VALUE_LENGTH)]
Bound = Annotated[int | float, Field(allow_inf_nan=False)]


class BlueprintVariable(Input):
    """One setting of the game, given to it as an environment variable, with the rules its
    value must pass (docs/blueprints.md "Variables"; an egg's Laravel rules translate to
    these, control_plane/services/eggs/rules.py)."""

    env: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=64)
    description: str = Field("", max_length=1000)
    type: Literal["string", "integer", "number", "boolean"] = "string"
    default: str = Field("", max_length=MAX_VALUE_LENGTH)
    required: bool = False
    regex: str | None = Field(None, max_length=1024)
    min: Bound | None = None
    max: Bound | None = None
    # The bound itself is refused (Laravel's gt/lt): an integer's or a number's only.
    exclusive_min: bool = False
    exclusive_max: bool = False
    # The length in characters whatever the type (Laravel's digits_between on a number).
    min_length: Length | None = None
    max_length: Length | None = None
    options: list[Option] | None = Field(None, min_length=1, max_length=256)
    not_options: list[Option] | None = Field(None, min_length=1, max_length=256)
    format: Format | None = None
    starts_with: list[Affix] | None = Field(None, min_length=1, max_length=64)
    ends_with: list[Affix] | None = Field(None, min_length=1, max_length=64)
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
                compile_pattern(value)
            except ValueError as err:
                raise ValueError(f"not a valid regular expression: {err}") from err
        return value

    @model_validator(mode="after")
    def _bounds(self) -> BlueprintVariable:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        self._exclusive()
        low, high = self.min_length, self.max_length
        if low is not None and high is not None and low > high:
            raise ValueError("min_length must not exceed max_length")
        for bound in (self.min, self.max):
            # Only a number's value can lie between two whole numbers.
            if bound is not None and self.type != "number" and not float(bound).is_integer():
                raise ValueError(
                    f"min and max of this {self.type} variable must be whole numbers, "
                    f"not {show_number(bound)}"
                )
        if self.user_editable and not self.user_viewable:
            raise ValueError("a variable users can edit must be visible to them")
        # Every server starts with the default: it must pass the rules servers' values do.
        # An empty one of a required variable means that the administrator gives one.
        problem = value_problem(self.model_dump(), self.default) if self.default else None
        if problem:
            raise ValueError(f"default: {problem}")
        return self

    def _exclusive(self) -> None:
        for flag, bound in (("exclusive_min", self.min), ("exclusive_max", self.max)):
            if getattr(self, flag) and bound is None:
                raise ValueError(f"{flag} needs {flag.removeprefix('exclusive_')}")
            if getattr(self, flag) and self.type not in ("integer", "number"):
                raise ValueError(f"{flag} applies to integer and number variables only")
        closed = not (self.exclusive_min or self.exclusive_max)
        if not closed and self.min is not None and self.min == self.max:
            raise ValueError("min must be below max when either is exclusive")


class BlueprintInstall(Input):
    image: ImageReference
    entrypoint: str = Field("/bin/sh", min_length=1, max_length=255, pattern=r"^/\S+$")
    script: str = Field(min_length=1, max_length=64 * 1024)
    needs_root: bool = False
    # Where the install container sees the server's volume (eggs' scripts use /mnt/server).
    volume_path: Literal["/home/container", "/mnt/server"] = "/home/container"
    timeout_seconds: int = Field(DEFAULT_INSTALL_TIMEOUT_SECONDS, ge=1, le=6 * 3600)
    # The installer may write to its own root (a throwaway copy of its image), as eggs'
    # scripts do to install packages; the game's root follows ``read_only_root``.
    writable_root: bool = False


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
