"""An egg's ``variables`` as blueprint variables: names, defaults, visibility, rules.

A variable named as one the agent sets itself (``shared.server_spec.RESERVED_ENV_NAMES`` /
``RESERVED_ENV_PREFIXES``: ``SERVER_PORT``, ``HOME``, ``LD_…`` …) could not reach the game
under that name: it is renamed ``SERVER_<name>`` as Pelican renames its reserved ones, and
the startup command, configuration files and install script follow the new name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from control_plane.schemas.blueprints import BUILT_INS
from control_plane.schemas.variable_values import MAX_VALUE_LENGTH, value_problem
from control_plane.services.eggs.report import EggReport
from control_plane.services.eggs.rules import translate_rules
from shared.server_spec import ENV_NAME, RESERVED_ENV_NAMES, RESERVED_ENV_PREFIXES

MAX_VARIABLES: Final = 64
_NAME_LENGTH: Final = 64
_DESCRIPTION_LENGTH: Final = 1000


@dataclass
class EggVariables:
    """The variables as BlueprintVariable dicts, the names that had to change, and every
    name the egg defines (a refused variable's too: the startup may still name it)."""

    variables: list[dict[str, Any]] = field(default_factory=list)
    renames: dict[str, str] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)


def reserved(name: str) -> bool:
    return name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES)


def as_text(value: Any) -> str:
    """A default as text: YAML's ``true`` is ``"true"``, ``25565`` is ``"25565"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _flag(value: Any) -> bool:
    return value in (True, 1, "1", "true")


def egg_variables(
    egg: Mapping[str, Any], report: EggReport, *, accept_unknown_rules: bool
) -> EggVariables:
    """Every variable of the egg; a problem that blocks the import is a refused item."""
    raw = egg.get("variables") or []
    result = EggVariables()
    if not isinstance(raw, list):
        report.refused("variables", "must be a list")
        return result
    if len(raw) > MAX_VARIABLES:
        report.refused("variables", f"{len(raw)} variables, at most {MAX_VARIABLES}")
        return result
    names = [as_text(v.get("env_variable")) for v in raw if isinstance(v, dict)]
    for twice in sorted({name for name in names if names.count(name) > 1}):
        report.refused(f"variables.{twice}", "defined more than once")
    taken = set(names)
    result.names = {name for name in names if ENV_NAME.fullmatch(name)}
    for index, variable in enumerate(raw):
        if not isinstance(variable, dict):
            report.refused(f"variables.{index}", "must be an object")
            continue
        mapped = _variable(variable, index, taken, result.renames, report, accept_unknown_rules)
        if mapped is not None:
            result.variables.append(mapped)
    result.names = {result.renames.get(name, name) for name in result.names}
    return result


def _env_name(
    env: str, where: str, taken: set[str], renames: dict[str, str], report: EggReport
) -> str | None:
    if not ENV_NAME.fullmatch(env):
        report.refused(where, f"{env[:64]!r} is not a valid environment variable name")
        return None
    if not reserved(env):
        return env
    new = f"SERVER_{env}"
    while new in taken or reserved(new):
        new += "_"
    if not ENV_NAME.fullmatch(new):
        report.refused(where, f"{env} is set by the agent and cannot be renamed")
        return None
    taken.add(new)
    renames[env] = new
    if env in BUILT_INS:
        also = (
            f"{{{{{env}}}}} in the startup command and ${env} in the install script keep "
            "meaning the server's own, as in Pterodactyl"
        )
    else:
        also = "the startup command, configuration files and install script follow"
    report.changed(where, f"{env} is set by the agent itself: renamed {new} ({also})")
    return new


def _variable(
    variable: Mapping[str, Any],
    index: int,
    taken: set[str],
    renames: dict[str, str],
    report: EggReport,
    accept_unknown_rules: bool,
) -> dict[str, Any] | None:
    env_raw = as_text(variable.get("env_variable"))
    where = f"variables.{env_raw or index}"
    env = _env_name(env_raw, where, taken, renames, report)
    if env is None:
        return None
    where = f"variables.{env}"
    name = as_text(variable.get("name")).strip() or env
    if len(name) > _NAME_LENGTH:
        report.changed(where, f"name cut to {_NAME_LENGTH} characters")
        name = name[:_NAME_LENGTH]
    description = as_text(variable.get("description"))
    if len(description) > _DESCRIPTION_LENGTH:
        report.changed(where, f"description cut to {_DESCRIPTION_LENGTH} characters")
        description = description[:_DESCRIPTION_LENGTH]
    viewable = _flag(variable.get("user_viewable"))
    editable = _flag(variable.get("user_editable"))
    if editable and not viewable:
        report.changed(where, "editable but hidden from users: not editable (users cannot see it)")
        editable = False
    result: dict[str, Any] = {
        "env": env,
        "name": name,
        "description": description,
        "user_viewable": viewable,
        "user_editable": editable,
    }
    fields = _rules(variable.get("rules"), where, report, accept_unknown_rules)
    if fields is None:
        return None
    result.update(fields)
    result["default"] = _default(variable.get("default_value"), result, where, report)
    return result


def _rules(
    rules: Any, where: str, report: EggReport, accept_unknown_rules: bool
) -> dict[str, Any] | None:
    if rules is None:
        rules = ""
    if not isinstance(rules, str) and not (
        isinstance(rules, list) and all(isinstance(r, str) for r in rules)
    ):
        report.refused(f"{where}.rules", "must be a string or a list of strings")
        return None
    translation = translate_rules(rules)
    shown = rules if isinstance(rules, str) else "|".join(rules)
    for note in translation.notes:
        report.changed(f"{where}.rules", note)
    if translation.unknown:
        listed = ", ".join(repr(rule) for rule in translation.unknown)
        if not accept_unknown_rules:
            report.refused(
                f"{where}.rules",
                f"cannot enforce {listed}; import with accept_unknown_rules to enforce "
                "the variable as a plain string instead",
            )
            return None
        report.changed(f"{where}.rules", f"cannot enforce {listed}: enforced as a string")
        return {"type": "string", "required": "required" in _pieces(rules)}
    report.mapped(f"{where}.rules", f"{shown!r} enforced")
    return dict(translation.fields)


def _pieces(rules: str | list[str]) -> list[str]:
    pieces = rules.split("|") if isinstance(rules, str) else rules
    return [piece.strip() for piece in pieces]


def _default(raw: Any, variable: dict[str, Any], where: str, report: EggReport) -> str:
    default = as_text(raw)
    if len(default) > MAX_VALUE_LENGTH:
        report.changed(where, f"default longer than {MAX_VALUE_LENGTH} characters: emptied")
        return ""
    problem = value_problem(variable, default) if default else None
    if problem:
        report.changed(
            where,
            f"the default {default[:64]!r} breaks the egg's own rules ({problem}): emptied, "
            "so a value is given when a server is created",
        )
        return ""
    return default
