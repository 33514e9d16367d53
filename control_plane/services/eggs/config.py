"""An egg's ``config`` block: files to set before each start, the "up" markers, the stop.

Each part may be a JSON string (Pterodactyl's eggs) or an object (Pelican's YAML eggs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, get_args

from control_plane.services.eggs.placeholders import rewrite_config_text
from control_plane.services.eggs.report import EggReport
from shared.server_spec import (
    CONSOLE_TEXT,
    MAX_CONFIG_FILES,
    MAX_CONFIG_REPLACEMENTS,
    MAX_DONE_MARKERS,
    ConfigParserName,
    StopSignalName,
)
from shared.strict_json import NotStrictJson, loads

PARSERS: Final = frozenset(get_args(ConfigParserName))
PARSER_ALIASES: Final = {"yml": "yaml"}
SIGNALS: Final = frozenset(get_args(StopSignalName))
_CONSOLE_TEXT: Final = re.compile(CONSOLE_TEXT)
DEFAULT_STOP: Final = {"type": "signal", "value": "SIGTERM"}


def config_part(egg: Mapping[str, Any], name: str, report: EggReport) -> Any:
    """``config.<name>`` as data: a JSON string is parsed (strictly), an object kept."""
    config = egg.get("config")
    value = config.get(name) if isinstance(config, dict) else None
    if isinstance(value, str):
        if value.strip() in ("", "null"):
            return None
        try:
            return loads(value.encode("utf-8"))
        except NotStrictJson as err:
            report.refused(f"config.{name}", f"not strict JSON ({err.reason})")
            return None
    return value


def config_files(
    egg: Mapping[str, Any], renames: Mapping[str, str], report: EggReport
) -> list[dict[str, Any]]:
    """``config.files`` as our ConfigFile rules: each ``find`` key is one replacement; a key
    whose value is an object gives one conditional replacement per (current value, new
    value) pair (``regex:`` conditions kept)."""
    files = config_part(egg, "files", report)
    if not files:
        return []
    if not isinstance(files, dict):
        report.refused("config.files", "must be an object of file paths")
        return []
    if len(files) > MAX_CONFIG_FILES:
        report.refused("config.files", f"{len(files)} files, at most {MAX_CONFIG_FILES}")
        return []
    result = []
    for path, rule in files.items():
        where = f"config.files.{path}"
        parsed = _config_file(path, rule, renames, report, where)
        if parsed is not None:
            result.append(parsed)
    return result


def _config_file(
    path: str, rule: Any, renames: Mapping[str, str], report: EggReport, where: str
) -> dict[str, Any] | None:
    if not isinstance(rule, dict) or not isinstance(rule.get("find"), dict):
        report.refused(where, "needs a parser and a find object")
        return None
    parser = str(rule.get("parser", "file"))
    if parser in PARSER_ALIASES:
        report.changed(where, f"parser {parser!r} read as {PARSER_ALIASES[parser]!r}")
        parser = PARSER_ALIASES[parser]
    if parser not in PARSERS:
        report.refused(where, f"parser {parser!r} is not one of {', '.join(sorted(PARSERS))}")
        return None
    replace: list[dict[str, Any]] = []
    for match, value in rule["find"].items():
        if isinstance(value, dict):
            for condition, new in value.items():
                replace.append(
                    {
                        "match": match,
                        "if_value": rewrite_config_text(condition, renames, report, where),
                        "value": rewrite_config_text(_text(new), renames, report, where),
                    }
                )
        else:
            text = rewrite_config_text(_text(value), renames, report, where)
            replace.append({"match": match, "value": text})
    if not replace:
        report.ignored(where, "no keys to set")
        return None
    if len(replace) > MAX_CONFIG_REPLACEMENTS:
        report.refused(where, f"{len(replace)} keys, at most {MAX_CONFIG_REPLACEMENTS}")
        return None
    report.mapped(where, f"{parser}: {len(replace)} key(s) set before each start")
    return {"path": path, "parser": parser, "replace": replace}


def _text(value: Any) -> str:
    """A ``find`` value as text, JSON's spelling for non-text (``25565``, ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def startup_done(egg: Mapping[str, Any], report: EggReport) -> list[str]:
    """``config.startup.done`` (text or a list) as our markers; the rest of it is ignored."""
    startup = config_part(egg, "startup", report)
    if not startup:
        return []
    if not isinstance(startup, dict):
        report.refused("config.startup", "must be an object")
        return []
    done = startup.get("done")
    markers = [done] if isinstance(done, str) else done if isinstance(done, list) else []
    result: list[str] = []
    for marker in markers:
        if not isinstance(marker, str) or marker == "":
            continue
        if len(marker) > 256 or not _CONSOLE_TEXT.fullmatch(marker):
            # A console line never holds a line break: such a marker could never match.
            report.changed(
                "config.startup.done", f"{marker[:40]!r}… dropped: not one line of 1 to 256"
            )
            continue
        result.append(marker)
    if len(result) > MAX_DONE_MARKERS:
        report.refused("config.startup.done", f"{len(result)} markers, at most {MAX_DONE_MARKERS}")
        return []
    if result:
        report.mapped(
            "config.startup.done",
            "the server is running once its console prints " + " or ".join(repr(m) for m in result),
        )
    for key in sorted(set(startup) - {"done"}):
        report.ignored(f"config.startup.{key}", "not used")
    return result


def stop(egg: Mapping[str, Any], report: EggReport) -> dict[str, str]:
    """``config.stop``: ``^C`` is SIGINT, a signal's name that signal, anything else a
    console command."""
    config = egg.get("config")
    raw = config.get("stop") if isinstance(config, dict) else None
    if not isinstance(raw, str) or raw.strip() == "":
        report.changed("config.stop", "none given: stopped with SIGTERM")
        return dict(DEFAULT_STOP)
    value = raw.strip()
    if value.startswith("^"):
        name = value.lstrip("^").upper()
        if name == "C":
            report.changed(
                "config.stop",
                f"{raw!r} sends SIGINT, as Ctrl+C would (Wings sends SIGKILL for it)",
            )
            return {"type": "signal", "value": "SIGINT"}
        signal = name if name.startswith("SIG") else f"SIG{name}"
        if signal in SIGNALS:
            report.mapped("config.stop", f"the signal {signal}")
            return {"type": "signal", "value": signal}
        report.changed("config.stop", f"{raw!r} is no signal we send: SIGKILL, as Wings does")
        return {"type": "signal", "value": "SIGKILL"}
    if value.upper() in SIGNALS:
        report.changed("config.stop", f"{raw!r} read as the signal {value.upper()}")
        return {"type": "signal", "value": value.upper()}
    if len(value) > 256 or not _CONSOLE_TEXT.fullmatch(value):
        report.refused("config.stop", "a stop command is one line of at most 256 characters")
        return dict(DEFAULT_STOP)
    report.mapped("config.stop", f"the console command {value!r}")
    return {"type": "command", "value": value}


def logs(egg: Mapping[str, Any], report: EggReport) -> None:
    """``config.logs``: Wings' old log settings; the agent keeps console lines itself."""
    value = config_part(egg, "logs", report)
    if value:
        report.ignored("config.logs", "the agent keeps the console's lines itself")
