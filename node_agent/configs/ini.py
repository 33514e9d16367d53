"""The ``ini`` parser: ``[section]`` headers and ``key=value`` lines (ARK, Unturned, ...).

Edited line by line: comments, blank lines, order and untouched lines stay byte for byte.
A rule's ``match`` is ``section.key``, split at the first dot as Wings does; a section whose
name holds dots is written in brackets (``[/Script/Engine.GameSession].MaxPlayers``); a key
with no section is one before the first header; ``*.key`` sets ``key`` in every section that
has it. Keys are case-sensitive; ``=`` or ``:`` separates a key from its value, whose quotes
are kept. A missing key is added at the end of its section, and a missing section at the end
of the file (Wings does both). Every occurrence of a repeated key is set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from node_agent.configs.rules import Problems, Rule, RuleProblem, attempt

_HEADER: Final = re.compile(r"^\s*\[(?P<name>[^\]]*)\]\s*(?:[;#].*)?$")
_PAIR: Final = re.compile(r"^(?P<prefix>\s*(?P<key>[^=:;#\[\s][^=:]*?)\s*[=:]\s*)(?P<value>.*)$")
_ANY_SECTION: Final = "*"


@dataclass
class _Line:
    text: str  # without its line ending
    ending: str
    section: str
    key: str | None = None
    prefix: str = ""
    value: str = ""


def split_match(match: str) -> tuple[str, str]:
    """(section, key) of a rule's ``match``: Wings' first-dot split, brackets for dots."""
    if match.startswith("["):
        close = match.find("]")
        if close < 0 or close + 1 >= len(match) or match[close + 1] != ".":
            raise RuleProblem(f"{match}: write a bracketed section as [section].key")
        section, key = match[1:close], match[close + 2 :]
    elif "." in match:
        section, key = match.split(".", 1)
    else:
        section, key = "", match
    if not key:
        raise RuleProblem(f"{match}: no key after the section")
    return section, key


def _unquote(value: str) -> tuple[str, str]:
    """(value without its quotes, the quote character or '')."""
    stripped = value.rstrip()
    if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "\"'":
        return stripped[1:-1], stripped[0]
    return stripped, ""


def _parse(text: str) -> list[_Line]:
    lines: list[_Line] = []
    section = ""
    for raw in text.splitlines(keepends=True):
        content = raw.rstrip("\r\n")
        line = _Line(content, raw[len(content) :], section)
        header = _HEADER.match(content)
        if header:
            section = header["name"].strip()
            line.section = section
        else:
            pair = _PAIR.match(content)
            if pair:
                line.key, line.prefix, line.value = pair["key"], pair["prefix"], pair["value"]
        lines.append(line)
    return lines


def _insert_at(lines: list[_Line], section: str) -> int | None:
    """Where a new key of ``section`` goes: after its last key line (None: no such section)."""
    position: int | None = 0 if section == "" else None
    for index, line in enumerate(lines):
        if line.section != section:
            continue
        if line.key is not None or (position is None and _HEADER.match(line.text)):
            position = index + 1
    return position


def edit_ini(data: bytes, rules: Sequence[Rule], problems: Problems) -> bytes:
    """Apply ``rules`` to an ini file, changing only the lines of the keys they set."""
    text = data.decode("utf-8", "surrogateescape")
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = _parse(text)
    changed = False
    for rule in rules:
        try:
            section, key = split_match(rule.match)
        except RuleProblem as err:
            problems.add(str(err))
            continue
        found = False
        for line in lines:
            if line.key != key or (section != _ANY_SECTION and line.section != section):
                continue
            found = True
            current, quote = _unquote(line.value)
            value = attempt(rule, current, problems)
            if value is None or value == current:
                continue
            line.value = f"{quote}{_one_line(value)}{quote}"
            line.text = line.prefix + line.value
            changed = True
        if found or not rule.creates or section == _ANY_SECTION:
            continue
        value = rule.new_text(None)
        if value is None:
            continue
        new = _Line(f"{key}={_one_line(value)}", newline, section, key, f"{key}=", value)
        position = _insert_at(lines, section)
        if position is None:
            if lines and not lines[-1].ending:
                lines[-1].ending = newline
            lines.append(_Line(f"[{section}]", newline, section))
            position = len(lines)
        if position > 0 and not lines[position - 1].ending:
            lines[position - 1].ending = newline
        lines.insert(position, new)
        changed = True
    if not changed:
        return data
    return "".join(line.text + line.ending for line in lines).encode("utf-8", "surrogateescape")


def _one_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")
