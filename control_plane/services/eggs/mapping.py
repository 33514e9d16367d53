"""One egg (as plain data) -> a :class:`BlueprintCreate` and the report of what became of it.

:func:`map_egg` reads every part it knows, reports each, and builds the blueprint only if
nothing was refused; the blueprint's own validation has the last word (its problems become
refused items too). Fields of ours that an egg cannot carry come back from an export under
:data:`EXTENSION` and override what the egg's fields give (see exporting.py).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import ValidationError

from control_plane.schemas.blueprints import BUILT_INS, BlueprintCreate
from control_plane.services.eggs import config
from control_plane.services.eggs.placeholders import rename_in_script, rewrite_startup
from control_plane.services.eggs.report import EggReport
from control_plane.services.eggs.variables import egg_variables
from shared.server_spec import IMAGE_REFERENCE, MAX_ARGS

EggVersion = Literal["PTDL_v1", "PTDL_v2", "PLCN_v1", "PLCN_v2", "PLCN_v3"]
VERSIONS: Final = ("PTDL_v1", "PTDL_v2", "PLCN_v1", "PLCN_v2", "PLCN_v3")
# Our fields an egg has no place for, kept by an export under this key (other panels ignore it).
EXTENSION: Final = "x_stellarstack"
_IMAGE: Final = re.compile(IMAGE_REFERENCE)
_MAX_IMAGES: Final = 16
# What only a shell understands: the image's own entrypoint (which evaluates STARTUP, as egg
# images' entrypoints do) must run such a command; we never give it to a shell ourselves.
_SHELL: Final = re.compile(r"&&|\|\||[;|&<>`\n*~]|\$[A-Za-z_{(]|\b(?:if|then|fi|for|do|done)\b")
_ENTRYPOINTS: Final = {"bash": "/bin/bash", "ash": "/bin/ash", "sh": "/bin/sh"}
_IGNORED: Final = {
    "tags": "tags are not kept",
    "meta.update_url": "blueprints are not updated from a URL by themselves",
    "icon": "icons are not kept",
    "image": "not an image reference (an icon)",
}


@dataclass
class MappedEgg:
    """The blueprint an egg gives (None if refused), its egg uuid and version, the report."""

    version: str
    egg_uuid: str | None
    blueprint: BlueprintCreate | None
    report: EggReport


def egg_version(egg: Mapping[str, Any]) -> str | None:
    meta = egg.get("meta")
    version = meta.get("version") if isinstance(meta, dict) else None
    return version if isinstance(version, str) else None


def map_egg(egg: Mapping[str, Any], *, accept_unknown_rules: bool = False) -> MappedEgg:
    """The blueprint ``egg`` gives and the report; ``blueprint`` is None if anything refused."""
    report = EggReport()
    version = egg_version(egg) or ""
    if version not in VERSIONS:
        report.refused("meta.version", f"{version[:32]!r} is not one of {', '.join(VERSIONS)}")
        return MappedEgg(version, None, None, report)
    report.mapped("meta.version", version)
    egg_uuid = _egg_uuid(egg, report)
    found = egg_variables(egg, report, accept_unknown_rules=accept_unknown_rules)
    known = found.names | set(BUILT_INS)
    startup, image_command = _startup(egg, version, found.renames, known, report)
    data: dict[str, Any] = {
        "name": _text(egg, "name", 64, report),
        "description": _text(egg, "description", 4000, report),
        "author": _text(egg, "author", 255, report),
        "images": _images(egg, version, report),
        "image_command": image_command,
        "startup": startup,
        "stop": config.stop(egg, report),
        "install": _install(egg, found.renames, report),
        "variables": found.variables,
        "file_denylist": _denylist(egg, report),
        "config_files": config.config_files(egg, found.renames, report),
        "startup_done": config.startup_done(egg, report),
        "features": _features(egg, report),
    }
    config.logs(egg, report)
    for path, why in _IGNORED.items():
        head, _, tail = path.partition(".")
        value = egg.get(head)
        if tail and isinstance(value, dict):
            value = value.get(tail)
        if value and not (path == "image" and version == "PTDL_v1"):
            report.ignored(path, why)
    _apply_extension(egg, data, report)
    if report.refusals:
        return MappedEgg(version, egg_uuid, None, report)
    try:
        blueprint = BlueprintCreate.model_validate(data)
    except ValidationError as err:
        for error in err.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"]) or "egg"
            report.refused(where, error["msg"])
        return MappedEgg(version, egg_uuid, None, report)
    return MappedEgg(version, egg_uuid, blueprint, report)


def _egg_uuid(egg: Mapping[str, Any], report: EggReport) -> str | None:
    value = egg.get("uuid")
    if value is None:
        return None
    text = str(value)
    if not re.fullmatch(r"[0-9A-Za-z-]{1,36}", text):
        report.ignored("uuid", "not a uuid: the egg is matched by its name")
        return None
    report.mapped("uuid", "importing this egg again updates the same blueprint")
    return text.lower()


def _text(egg: Mapping[str, Any], key: str, limit: int, report: EggReport) -> str:
    value = egg.get(key)
    text = "" if value is None else str(value)
    if len(text) > limit:
        report.changed(key, f"cut to {limit} characters")
        text = text[:limit]
    return text


def _images(egg: Mapping[str, Any], version: str, report: EggReport) -> list[dict[str, str]]:
    if version == "PTDL_v1":
        raw: Any = egg.get("images") or ([egg["image"]] if egg.get("image") else [])
    else:
        raw = egg.get("docker_images") or {}
    pairs = list(raw.items()) if isinstance(raw, dict) else [(str(i), i) for i in raw or []]
    images: list[dict[str, str]] = []
    for label, image in pairs:
        reference = str(image).strip()
        if not _IMAGE.fullmatch(reference) or len(reference) > 255:
            report.refused("docker_images", f"{reference[:80]!r} is not an image reference")
            continue
        if len(images) == _MAX_IMAGES:
            report.ignored("docker_images", f"{reference}: at most {_MAX_IMAGES} images")
            continue
        images.append({"name": (str(label).strip() or reference)[:64], "image": reference})
    if images:
        report.mapped("docker_images", f"{len(images)} image(s), the first is the default")
    elif not report.refusals:
        report.refused("docker_images", "the egg names no image")
    return images


def _startup(
    egg: Mapping[str, Any],
    version: str,
    renames: Mapping[str, str],
    known: set[str],
    report: EggReport,
) -> tuple[str, bool]:
    if version == "PLCN_v3":
        commands = egg.get("startup_commands")
        if not isinstance(commands, dict) or not commands:
            report.refused("startup_commands", "the egg has no startup command")
            return "", False
        (first_name, text), *others = list(commands.items())
        if others:
            names = ", ".join(repr(name) for name, _ in others)
            report.ignored(
                "startup_commands",
                f"a blueprint has one startup command: {first_name!r} is kept, {names} not",
            )
    else:
        text = egg.get("startup")
    if not isinstance(text, str) or not text.strip():
        report.refused("startup", "the egg has no startup command")
        return "", False
    startup = rewrite_startup(text.strip(), renames, known, report)
    image_command = _needs_shell(startup)
    if image_command:
        report.changed(
            "startup",
            "uses shell syntax (&&, ;, |, $VAR, redirections …) that cannot be split into "
            "arguments: the image's own command runs it from STARTUP, as egg images do",
        )
    else:
        report.mapped("startup", "split into arguments, never given to a shell")
    return startup, image_command


def _needs_shell(startup: str) -> bool:
    if _SHELL.search(startup):
        return True
    try:
        return len(shlex.split(startup)) > MAX_ARGS
    except ValueError:
        return True


def _install(
    egg: Mapping[str, Any], renames: Mapping[str, str], report: EggReport
) -> dict[str, Any] | None:
    scripts = egg.get("scripts")
    installation = scripts.get("installation") if isinstance(scripts, dict) else None
    if not isinstance(installation, dict) or not str(installation.get("script") or "").strip():
        report.mapped("scripts.installation", "no install script")
        return None
    script = str(installation["script"])
    if "\r" in script:
        script = script.replace("\r\n", "\n").replace("\r", "\n")
        report.changed("scripts.installation.script", "Windows line ends made Unix ones")
    renamed = rename_in_script(script, renames)
    if renamed != script:
        report.changed("scripts.installation.script", "renamed variables followed")
    container = str(installation.get("container") or "").strip()
    if not _IMAGE.fullmatch(container):
        report.refused("scripts.installation.container", f"{container[:80]!r} is not an image")
        return None
    entrypoint = str(installation.get("entrypoint") or "bash").strip()
    entrypoint = _ENTRYPOINTS.get(entrypoint, entrypoint)
    if not re.fullmatch(r"/\S+", entrypoint):
        report.refused("scripts.installation.entrypoint", f"{entrypoint[:80]!r} is no program")
        return None
    report.changed(
        "scripts.installation",
        f"runs {entrypoint} in {container} as root (with only the five capabilities of the "
        "hardened install container) with the server's files at /mnt/server, and a writable "
        "root of its own (a throwaway copy of its image, removed with it) to install "
        "packages or tools in, as eggs expect; the game's root stays read-only",
    )
    return {
        "image": container,
        "entrypoint": entrypoint,
        "script": renamed,
        "needs_root": True,
        "volume_path": "/mnt/server",
        "writable_root": True,
    }


def _denylist(egg: Mapping[str, Any], report: EggReport) -> list[str]:
    raw = egg.get("file_denylist") or []
    patterns = [str(p) for p in raw if isinstance(p, str | int) and str(p).strip()]
    if patterns:
        report.mapped("file_denylist", f"{len(patterns)} pattern(s) the file API never touches")
    return patterns


def _features(egg: Mapping[str, Any], report: EggReport) -> list[str]:
    raw = egg.get("features") or []
    features = [str(f) for f in raw if isinstance(f, str) and f] if isinstance(raw, list) else []
    if features:
        report.mapped("features", f"kept for the panel: {', '.join(features)}")
    return features


def _apply_extension(egg: Mapping[str, Any], data: dict[str, Any], report: EggReport) -> None:
    extension = egg.get(EXTENSION)
    if not isinstance(extension, dict):
        return
    for key, value in extension.items():
        if key not in BlueprintCreate.model_fields:
            report.ignored(f"{EXTENSION}.{key}", "not a blueprint field")
            continue
        data[key] = value
        report.mapped(f"{EXTENSION}.{key}", "StellarStack's own value, as exported")
