"""A blueprint as an egg again: ``PTDL_v2`` (Pterodactyl, JSON strings in ``config``) or
``PLCN_v3`` (Pelican, objects and ``startup_commands``).

Import after export gives the same blueprint back, field for field. What an egg cannot say
(whether the root filesystem is read-only, an install's timeout, rules eggs have no words
for …) is found by importing the egg just made: each field that would come back different
is added, with its value, under :data:`~control_plane.services.eggs.mapping.EXTENSION`,
which other panels ignore and our import applies last.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import ValidationError

from control_plane.db.models import Blueprint
from control_plane.errors import InvalidRequest
from control_plane.schemas.blueprints import BlueprintCreate
from control_plane.schemas.variable_values import MAX_VALUE_LENGTH
from control_plane.services.eggs.mapping import EXTENSION, map_egg
from control_plane.services.eggs.placeholders import to_pterodactyl

ExportFormat = Literal["ptdl_v2", "plcn_v3"]
_VERSIONS: Final = {"ptdl_v2": "PTDL_v2", "plcn_v3": "PLCN_v3"}
_KINDS: Final = {
    "string": "string",
    "integer": "integer",
    "number": "numeric",
    "boolean": "boolean",
}
_SHORT_ENTRYPOINTS: Final = {"/bin/bash": "bash", "/bin/ash": "ash", "/bin/sh": "sh"}
_BOOLEAN_OPTIONS: Final = ["0", "1"]


def export_egg(
    blueprint: BlueprintCreate, egg_uuid: str | None, form: ExportFormat
) -> dict[str, Any]:
    """The egg of ``blueprint`` in ``form``; importing it gives ``blueprint`` back."""
    egg = _egg(blueprint, egg_uuid, form)
    again = map_egg(egg, accept_unknown_rules=True).blueprint
    ours = blueprint.model_dump(mode="json")
    theirs = again.model_dump(mode="json") if again is not None else {}
    kept = {key: value for key, value in ours.items() if theirs.get(key) != value}
    if kept:
        egg[EXTENSION] = kept
    return egg


def _egg(blueprint: BlueprintCreate, egg_uuid: str | None, form: ExportFormat) -> dict[str, Any]:
    pterodactyl = form == "ptdl_v2"
    files = _config_files(blueprint, pterodactyl)
    startup = {"done": list(blueprint.startup_done)} if blueprint.startup_done else {}
    egg: dict[str, Any] = {
        "_comment": "Exported by StellarStack",
        "meta": {"version": _VERSIONS[form], "update_url": None},
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "name": blueprint.name,
        "author": blueprint.author,
        "description": blueprint.description,
        "features": list(blueprint.features) or None,
        "docker_images": {image.name: image.image for image in blueprint.images},
        "file_denylist": list(blueprint.file_denylist),
    }
    if egg_uuid is not None:
        egg["uuid"] = egg_uuid
    if pterodactyl:
        egg["startup"] = blueprint.startup
    else:
        egg["tags"] = []
        egg["startup_commands"] = {"Default": blueprint.startup}
    config: dict[str, Any] = {
        "files": files,
        "startup": startup,
        "logs": {},
        "stop": _stop(blueprint),
    }
    if pterodactyl:
        config = {key: _json(value) if key != "stop" else value for key, value in config.items()}
    egg["config"] = config
    egg["scripts"] = {"installation": _installation(blueprint)}
    egg["variables"] = [_variable(v, pterodactyl) for v in blueprint.model_dump()["variables"]]
    return egg


def _json(value: Any) -> str:
    return json.dumps(value, indent=4, ensure_ascii=False)


def _stop(blueprint: BlueprintCreate) -> str:
    if blueprint.stop.type == "command":
        return blueprint.stop.value
    return "^C" if blueprint.stop.value == "SIGINT" else f"^{blueprint.stop.value}"


def _config_files(blueprint: BlueprintCreate, pterodactyl: bool) -> dict[str, Any]:
    spell = to_pterodactyl if pterodactyl else (lambda text: text)
    files: dict[str, Any] = {}
    for config_file in blueprint.config_files:
        find: dict[str, Any] = {}
        for rule in config_file.replace:
            value = spell(rule.value)
            if rule.if_value is None:
                find[rule.match] = value
            else:
                conditions = find.setdefault(rule.match, {})
                if isinstance(conditions, dict):
                    conditions[spell(rule.if_value)] = value
        files[config_file.path] = {"parser": config_file.parser, "find": find}
    return files


def _installation(blueprint: BlueprintCreate) -> dict[str, Any]:
    install = blueprint.install
    if install is None:
        return {"script": None, "container": None, "entrypoint": None}
    return {
        "script": install.script,
        "container": install.image,
        "entrypoint": _SHORT_ENTRYPOINTS.get(install.entrypoint, install.entrypoint),
    }


def _variable(variable: Mapping[str, Any], pterodactyl: bool) -> dict[str, Any]:
    rules = laravel_rules(variable)
    return {
        "name": variable["name"],
        "description": variable["description"],
        "env_variable": variable["env"],
        "default_value": variable["default"],
        "user_viewable": variable["user_viewable"],
        "user_editable": variable["user_editable"],
        "rules": "|".join(rules) if pterodactyl and not variable.get("regex") else rules,
        "field_type": "text",
    }


def laravel_rules(variable: Mapping[str, Any]) -> list[str]:
    """A variable's rules in Laravel's words (what eggs carry)."""
    rules = ["required" if variable.get("required") else "nullable"]
    kind = variable.get("type", "string")
    rules.append(_KINDS.get(kind, "string"))
    options = variable.get("options")
    if options is not None and not (kind == "boolean" and options == _BOOLEAN_OPTIONS):
        rules.append("in:" + _csv(options))
    if variable.get("not_options"):
        rules.append("not_in:" + _csv(variable["not_options"]))
    for bound, open_rule in (("min", "gt"), ("max", "lt")):
        if variable.get(bound) is not None:
            name = open_rule if variable.get(f"exclusive_{bound}") else bound
            rules.append(f"{name}:{_number(variable[bound])}")
    form = variable.get("format")
    if form == "digits":
        # Only 0-9, their count: a non-empty value has at least one.
        low = variable.get("min_length") or 1
        high = variable.get("max_length") or MAX_VALUE_LENGTH
        rules.append(f"digits_between:{low},{high}")
    elif form:
        rules.append(str(form))
    for affix in ("starts_with", "ends_with"):
        if variable.get(affix):
            rules.append(f"{affix}:" + _csv(variable[affix]))
    if variable.get("regex"):
        rules.append("regex:" + _php_pattern(str(variable["regex"])))
    return rules


def _php_pattern(pattern: str) -> str:
    """Our pattern (it must match the whole value) as PHP's ``preg_match`` reads one (it
    finds a pattern anywhere): anchored, between delimiters it does not contain."""
    anchored = pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$")
    body = pattern if anchored else f"^(?:{pattern})$"
    delimiter = next((d for d in "/#~!%@" if d not in body), None)
    if delimiter is None:
        return "/" + body.replace("/", "\\/") + "/"
    return f"{delimiter}{body}{delimiter}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _csv(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values)
    return buffer.getvalue()


def export_blueprint(blueprint: Blueprint, form: ExportFormat) -> dict[str, Any]:
    """The egg of a stored blueprint (400 if it no longer passes today's checks)."""
    data = {column: getattr(blueprint, column) for column in BlueprintCreate.model_fields}
    try:
        checked = BlueprintCreate.model_validate(data)
    except ValidationError as err:
        raise InvalidRequest.from_validation(
            err, "the blueprint does not pass today's checks: save it again first"
        ) from err
    return export_egg(checked, blueprint.egg_uuid, form)
