"""The enrolment bundle: the TOML ``stellar-cp node add`` prints, read for the installer."""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node_agent.provision.errors import InstallError


@dataclass(frozen=True)
class Bundle:
    """The enrolment bundle: the agent's settings and the installer's own ``[enrolment]``."""

    settings: dict[str, Any]
    control_plane: list[str]
    game_ports: str | None
    tls_host: str | None

    @classmethod
    def parse(cls, text: str, source: str) -> Bundle:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise InstallError(f"the bundle {source} is not valid TOML: {err}") from err
        enrolment = raw.pop("enrolment", {})
        if not isinstance(enrolment, dict):
            raise InstallError("[enrolment] in the bundle must be a table")
        unknown = set(enrolment) - {"control_plane", "game_ports", "tls_host"}
        if unknown:
            raise InstallError(f"[enrolment] has unknown keys: {', '.join(sorted(unknown))}")
        missing = [key for key in ("node_id", "trusted_keys") if key not in raw]
        if missing:
            raise InstallError(
                f"the bundle {source} lacks {', '.join(missing)}: use the whole text "
                "`stellar-cp node add` printed"
            )
        addresses = enrolment.get("control_plane", [])
        if isinstance(addresses, str):
            addresses = [addresses]
        return cls(raw, list(addresses), enrolment.get("game_ports"), enrolment.get("tls_host"))


def read_bundle(path: str) -> Bundle:
    """The bundle in the file ``path`` (``-``: stdin)."""
    if path == "-":
        return Bundle.parse(sys.stdin.read(), "on stdin")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InstallError(f"cannot read the bundle {path}: {err}") from err
    return Bundle.parse(text, path)
