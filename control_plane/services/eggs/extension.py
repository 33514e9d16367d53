"""The :data:`EXTENSION` block of an egg: StellarStack's own fields, as an export keeps them.

An export adds, under ``x_stellarstack``, each blueprint field an egg cannot say (or says
differently); an import applies them last, over what the egg's own parts gave. The block is
plain text in a file anyone can edit, so an import:

* reports each override as ``changed`` with the value it sets, and drops the report's items
  that described the egg's own (now replaced) value of that field;
* refuses the overrides that loosen what the egg alone would give (a writable root, the
  image's own command, another startup or installer, other config files or variable rules,
  fewer denied paths) unless the administrator passes ``accept_extension`` (CLI
  ``--accept-extension``): they are for re-importing our own exports, from a source trusted
  as much as the panel itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from control_plane.schemas.blueprints import BlueprintCreate
from control_plane.services.eggs.report import EggReport

EXTENSION: Final = "x_stellarstack"
# The report items (egg parts) that describe each blueprint field an override replaces.
_DESCRIBED_BY: Final[Mapping[str, tuple[str, ...]]] = {
    "name": ("name",),
    "description": ("description",),
    "author": ("author",),
    "images": ("docker_images", "images", "image"),
    "image_command": ("startup", "startup_commands"),
    "startup": ("startup", "startup_commands"),
    "stop": ("config.stop",),
    "install": ("scripts.installation",),
    "variables": ("variables",),
    "file_denylist": ("file_denylist",),
    "config_files": ("config.files",),
    "startup_done": ("config.startup",),
    "features": ("features",),
}
# Fields whose override runs other code, or with fewer walls, than the egg's own parts say.
_ALWAYS_GUARDED: Final = frozenset({"install", "startup", "config_files", "variables"})
_SHOWN_CHARACTERS: Final = 2000


def guarded_override(key: str, value: Any, data: Mapping[str, Any]) -> bool:
    """Whether overriding ``key`` with ``value`` loosens what the egg's parts (``data``) give."""
    if key == "read_only_root":
        return value is not True
    if key == "image_command":
        return value is not False
    if key == "file_denylist":
        kept = set(value) if isinstance(value, list) else set()
        return not set(data.get("file_denylist") or []) <= kept
    return key in _ALWAYS_GUARDED


def apply_extension(
    egg: Mapping[str, Any], data: dict[str, Any], report: EggReport, *, accept: bool
) -> None:
    """Apply ``egg``'s extension block to ``data`` (the blueprint the egg's parts give)."""
    extension = egg.get(EXTENSION)
    if extension is None:
        return
    if not isinstance(extension, dict):
        report.ignored(EXTENSION, "not an object")
        return
    for key, value in extension.items():
        where = f"{EXTENSION}.{key}"
        if key not in BlueprintCreate.model_fields:
            report.ignored(where, "not a blueprint field")
            continue
        if guarded_override(key, value, data) and not accept:
            report.refused(
                where,
                f"would set {key} to {_show(value)} over what the egg says; an export's "
                "extension is applied only with accept_extension=true (CLI "
                "--accept-extension), for a file you trust as much as the panel",
            )
            continue
        report.forget(_DESCRIBED_BY.get(key, ()))
        data[key] = value
        report.changed(where, f"StellarStack's own value, set over the egg's: {_show(value)}")


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > _SHOWN_CHARACTERS:
        return f"{text[:_SHOWN_CHARACTERS]}… ({len(text) - _SHOWN_CHARACTERS} more characters)"
    return text
