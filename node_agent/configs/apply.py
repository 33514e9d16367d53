"""A server's configuration files, each read, edited by its parser and written back.

Blocking work (file I/O and parsing): :func:`apply_config_files` runs in a worker thread.
Each file ends in one :class:`FileOutcome`; a file that cannot be used (refused, too large,
does not parse) is left byte for byte as it was, and its notice says why.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import structlog

from node_agent.configs.ini import edit_ini
from node_agent.configs.lines import edit_lines
from node_agent.configs.placeholders import PlaceholderValues
from node_agent.configs.properties import edit_properties
from node_agent.configs.rules import Problems, RegexBudget, Rule, RuleProblem
from node_agent.configs.structured import edit_json, edit_toml, edit_yaml
from node_agent.configs.text import Unparsable
from node_agent.configs.volume_io import MAX_CONFIG_BYTES, ConfigRefused, read_config, write_config
from node_agent.configs.xmlfile import edit_xml
from node_agent.files.confine import open_root
from node_agent.files.errors import InvalidPath
from node_agent.files.paths import parse_file_path
from node_agent.files.writes import Owner
from shared.server_spec import ConfigFile, ConfigParserName

log = structlog.get_logger("agent.configs")
Editor = Callable[[bytes, Sequence[Rule], Problems], bytes]
EDITORS: Final[dict[ConfigParserName, Editor]] = {
    "properties": edit_properties,
    "json": edit_json,
    "yaml": edit_yaml,
    "ini": edit_ini,
    "xml": edit_xml,
    "file": edit_lines,
    "toml": edit_toml,
}
# Round-trip parsers are pure Python: ruamel.yaml reads about 3 s per MiB, tomlkit about 1 s
# (bench/config_apply.py). The line-keeping properties, ini and xml parsers read a game's file
# at about 0.1 s per MiB, but one made of keys a rule sets costs them 0.5 to 2 s per MiB.
# Game configs in these formats are kilobytes; a start (which holds the server's lock) must
# not wait a minute on a planted file. ``file`` and ``json`` read 8 MiB in under a second.
PARSER_CAPS: Final[dict[ConfigParserName, int]] = {
    "yaml": 512 * 1024,
    "toml": 1024 * 1024,
    "properties": 1024 * 1024,
    "ini": 2 * 1024 * 1024,
    "xml": 2 * 1024 * 1024,
}
# The line-keeping parsers try every rule on every line (xml: element), so a file costs its
# lines times its rules: 256 rules over 8 MiB of empty lines took three minutes. About 1 to
# 4 s of a start at this bound.
MAX_RULE_LINES: Final = 16_000_000
_UNIT: Final[dict[ConfigParserName, tuple[bytes, str]]] = {
    "properties": (b"\n", "lines"),
    "ini": (b"\n", "lines"),
    "file": (b"\n", "lines"),
    "xml": (b"<", "tags"),
}
Outcome = Literal["changed", "created", "unchanged", "missing", "refused", "unparsable"]
MAX_NOTICE_LENGTH: Final = 600


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one configuration file, and the console notice it needs, if any."""

    path: str
    outcome: Outcome
    problems: tuple[str, ...] = field(default=())

    @property
    def notice(self) -> str | None:
        """One console line, or None when all went well."""
        if self.outcome in {"refused", "unparsable"}:
            reason = "; ".join(self.problems)
            text = f"config file {self.path} left as it was: {reason}"
        elif self.problems:
            text = f"config file {self.path} set, but: " + "; ".join(self.problems)
        else:
            return None
        return text if len(text) <= MAX_NOTICE_LENGTH else text[: MAX_NOTICE_LENGTH - 1] + "…"


def build_rules(
    config: ConfigFile,
    values: PlaceholderValues,
    problems: Problems,
    budget: RegexBudget | None = None,
) -> list[Rule]:
    """The file's rules with placeholders filled; a rule that cannot be built is reported.

    ``budget``: the start's time for regex conditions, shared by all its files."""
    rules: list[Rule] = []
    budget = budget or RegexBudget()
    for replacement in config.replace:
        try:
            rule = Rule.build(replacement, values, budget)
        except RuleProblem as err:
            problems.add(str(err))
            continue
        for placeholder in rule.template.unknown:
            problems.add(f"unknown placeholder {placeholder} left empty")
        rules.append(rule)
    return rules


def _too_long(parser: ConfigParserName, data: bytes, rules: int) -> str | None:
    """Why a file has too many lines for its rules to be tried on each, or None."""
    if parser not in _UNIT or not rules:
        return None
    separator, unit = _UNIT[parser]
    count = data.count(separator) + 1
    if count * rules <= MAX_RULE_LINES:
        return None
    return (
        f"{count} {unit} for {rules} rules: at most {MAX_RULE_LINES // rules} {unit} "
        "for that many are read before a start"
    )


def apply_config_file(
    root_fd: int,
    config: ConfigFile,
    values: PlaceholderValues,
    owner: Owner,
    max_bytes: int = MAX_CONFIG_BYTES,
    budget: RegexBudget | None = None,
) -> FileOutcome:
    """Apply one file's rules in the volume whose root is ``root_fd`` (blocking)."""
    problems = Problems()
    try:
        parts = parse_file_path(config.path)
    except InvalidPath as err:
        return FileOutcome(config.path, "refused", (err.message,))
    try:
        cap = min(max_bytes, PARSER_CAPS.get(config.parser, max_bytes))
        data = read_config(root_fd, parts, cap)
    except ConfigRefused as err:
        return FileOutcome(config.path, "refused", (str(err),))
    rules = build_rules(config, values, problems, budget)
    if data is None and config.parser == "file":
        return FileOutcome(config.path, "missing", tuple(problems.items))
    if data and (too_long := _too_long(config.parser, data, len(rules))):
        return FileOutcome(config.path, "refused", (*problems.items, too_long))
    try:
        edited = EDITORS[config.parser](data or b"", rules, problems)
    except Unparsable as err:
        return FileOutcome(config.path, "unparsable", (str(err),))
    except RecursionError:
        return FileOutcome(config.path, "unparsable", ("nested too deeply to read",))
    except ValueError as err:
        # What a parser raises besides its own error (a number of more digits than Python
        # converts): this file cannot be read, the others are still set.
        return FileOutcome(config.path, "unparsable", (f"cannot be read: {err}"[:200],))
    if edited == (data or b""):
        return FileOutcome(
            config.path, "unchanged" if data is not None else "missing", tuple(problems.items)
        )
    try:
        write_config(root_fd, parts, edited, owner)
    except ConfigRefused as err:
        return FileOutcome(config.path, "refused", (*problems.items, str(err)))
    return FileOutcome(
        config.path, "changed" if data is not None else "created", tuple(problems.items)
    )


def apply_config_files(
    volume: Path,
    configs: Sequence[ConfigFile],
    values: PlaceholderValues,
    owner: Owner,
    max_bytes: int = MAX_CONFIG_BYTES,
) -> list[FileOutcome]:
    """Apply every file's rules in the volume at ``volume`` (blocking: run it in a thread)."""
    root_fd = open_root(volume)
    budget = RegexBudget()  # one start: its files share it
    try:
        return [
            apply_config_file(root_fd, config, values, owner, max_bytes, budget)
            for config in configs
        ]
    finally:
        os.close(root_fd)
