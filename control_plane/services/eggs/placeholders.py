"""Eggs' dotted placeholders in our spellings, and renamed variables followed everywhere.

In configuration files the agent fills ``{{server.allocations.default.port}}`` / ``.ip``,
``{{server.build.memory}}``, ``{{server.environment.X}}``, ``{{env.X}}`` and
``{{config.docker.interface}}`` (the games' bridge address). The older spellings
(``server.build.default.port``, ``server.build.env.X`` …, Pelican's
``server.build.memory_limit``) are rewritten to these. Any other ``{{config.X}}`` is emptied:
Wings filled those from its own configuration, which leaked its node token. Other dotted
names (``{{server.build.disk}}`` …) are emptied too: nothing would fill them.

In the startup command the same names become our placeholders: ``{{SERVER_PORT}}``,
``{{SERVER_IP}}``, ``{{SERVER_MEMORY}}`` and ``{{X}}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from control_plane.services.eggs.report import EggReport

DOTTED: Final = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")
PORT: Final = "server.allocations.default.port"
IP: Final = "server.allocations.default.ip"
MEMORY: Final = "server.build.memory"
ENVIRONMENT: Final = "server.environment."
BRIDGE: Final = "config.docker.interface"
_LEGACY: Final = {
    "server.build.default.port": PORT,
    "server.build.env.SERVER_PORT": PORT,
    "server.environment.SERVER_PORT": PORT,
    "env.SERVER_PORT": PORT,
    "server.build.default.ip": IP,
    "server.build.env.SERVER_IP": IP,
    "server.environment.SERVER_IP": IP,
    "env.SERVER_IP": IP,
    "server.build.memory_limit": MEMORY,
    "server.build.env.SERVER_MEMORY": MEMORY,
    "server.environment.SERVER_MEMORY": MEMORY,
    "env.SERVER_MEMORY": MEMORY,
}
_ENV_PREFIXES: Final = ("server.build.env.", "server.build.environment.", ENVIRONMENT, "env.")
_STARTUP_BUILT_INS: Final = {PORT: "SERVER_PORT", IP: "SERVER_IP", MEMORY: "SERVER_MEMORY"}
_BUILT_IN_NAMES: Final = frozenset(_STARTUP_BUILT_INS.values())
# Ours (exported as PLCN_v3, which Pelican reads) -> Pterodactyl's (PTDL_v2, which Wings reads).
TO_PTERODACTYL: Final = {PORT: "server.build.default.port", IP: "server.build.default.ip"}


def canonical(name: str, renames: Mapping[str, str]) -> str | None:
    """A dotted placeholder in our spelling (a renamed variable's new name), or None if
    nothing fills it."""
    name = _LEGACY.get(name, name)
    if name in (PORT, IP, MEMORY, BRIDGE):
        return name
    for prefix in _ENV_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            variable = name[len(prefix) :]
            spelled = "env." if prefix == "env." else ENVIRONMENT
            return spelled + renames.get(variable, variable)
    return None


def rewrite_config_text(
    text: str, renames: Mapping[str, str], report: EggReport, where: str
) -> str:
    """``text`` of a configuration rule with every dotted placeholder in our spelling."""

    def replace(match: re.Match[str]) -> str:
        name = match[1]
        if "." not in name:
            return match[0]  # not a placeholder of configuration files: kept as text
        ours = canonical(name, renames)
        if ours is None:
            why = (
                "only {{config.docker.interface}} is offered (the agent's own settings never are)"
                if name.startswith("config.")
                else "nothing fills it"
            )
            report.changed(where, f"{{{{{name}}}}} emptied: {why}")
            return ""
        if ours != name:
            report.changed(where, f"{{{{{name}}}}} rewritten as {{{{{ours}}}}}")
        return "{{" + ours + "}}"

    return DOTTED.sub(replace, text)


def rewrite_startup(
    text: str,
    renames: Mapping[str, str],
    known: set[str],
    report: EggReport,
) -> str:
    """The startup command with eggs' placeholders as ours: dotted names become
    ``{{SERVER_PORT}}``/``{{SERVER_IP}}``/``{{SERVER_MEMORY}}``/``{{X}}``, renamed variables
    their new names; a placeholder no variable defines is emptied."""

    def replace(match: re.Match[str]) -> str:
        name = match[1]
        if "." in name:
            ours = canonical(name, renames)
            if ours in _STARTUP_BUILT_INS:
                target = _STARTUP_BUILT_INS[ours]
            elif ours is not None and ours.startswith((ENVIRONMENT, "env.")):
                target = ours.split(".")[-1]
            else:
                report.changed("startup", f"{{{{{name}}}}} emptied: nothing fills it")
                return ""
            report.changed("startup", f"{{{{{name}}}}} rewritten as {{{{{target}}}}}")
        elif name in _BUILT_IN_NAMES:
            # Pterodactyl fills these before any variable: the server's port, address, memory.
            target = name
        else:
            target = renames.get(name, name)
        if target not in known:
            report.changed("startup", f"{{{{{name}}}}} emptied: no variable of the egg defines it")
            return ""
        return "{{" + target + "}}"

    return DOTTED.sub(replace, text)


def rename_in_script(script: str, renames: Mapping[str, str]) -> str:
    """``$OLD`` and ``${OLD}`` in an install script as the renamed variables' new names
    (``SERVER_PORT``, ``SERVER_IP`` and ``SERVER_MEMORY`` keep meaning the server's own)."""
    renames = {old: new for old, new in renames.items() if old not in _BUILT_IN_NAMES}
    if not renames:
        return script
    names = "|".join(re.escape(name) for name in sorted(renames, key=len, reverse=True))
    pattern = re.compile(r"\$(\{)?(" + names + r")(?(1)\}|\b)")
    replace: Callable[[re.Match[str]], str] = lambda m: (  # noqa: E731
        "${" + renames[m[2]] + "}" if m[1] else "$" + renames[m[2]]
    )
    return pattern.sub(replace, script)


def to_pterodactyl(text: str) -> str:
    """Our spellings as Pterodactyl's Wings reads them (for a ``PTDL_v2`` export)."""

    def replace(match: re.Match[str]) -> str:
        name = match[1]
        if name in TO_PTERODACTYL:
            return "{{" + TO_PTERODACTYL[name] + "}}"
        if name.startswith(ENVIRONMENT):
            return "{{server.build.env." + name[len(ENVIRONMENT) :] + "}}"
        return match[0]

    return DOTTED.sub(replace, text)
