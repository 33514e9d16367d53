"""The ``properties`` parser: Java ``.properties`` files (Minecraft's ``server.properties``).

Edited line by line: comments, blank lines, order and untouched lines stay byte for byte.
A key ends at the first unescaped ``=``, ``:`` or blank (``key=value``, ``key: value``,
``key value``); a line ending in an odd number of backslashes goes on on the next one. A
rule's ``match`` is the whole key (``rcon.port`` is one key, not a path). A set key keeps
its own separator; its value is written as ``Properties.store`` would read it back:
backslashes, line breaks and leading blanks escaped, non-ASCII as ``\\uXXXX`` (Java reads
these files as ISO-8859-1, Minecraft included). A missing key is appended, as Wings does.
Every occurrence of a repeated key is set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from node_agent.configs.rules import Problems, Rule, attempt

_ESCAPES: Final = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_WRITE_ESCAPES: Final = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}
_BLANKS: Final = " \t\f"
_SEPARATOR: Final = re.compile(r"[ \t\f]*[=:]?[ \t\f]*")


@dataclass
class _Pair:
    """One ``key=value`` (its natural lines ``first``..``last``), split as written."""

    first: int
    last: int
    key: str
    raw_key: str
    separator: str
    raw_value: str
    indent: str


def unescape(raw: str) -> str:
    """The text a Java reader makes of ``raw`` (``\\uXXXX``, ``\\t``..., ``\\x`` is x)."""
    out: list[str] = []
    position = 0
    while position < len(raw):
        char = raw[position]
        if char != "\\" or position + 1 == len(raw):
            out.append(char)
            position += 1
            continue
        following = raw[position + 1]
        if following == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", raw[position + 2 : position + 6]):
            out.append(chr(int(raw[position + 2 : position + 6], 16)))
            position += 6
            continue
        out.append(_ESCAPES.get(following, following))
        position += 2
    # A pair of \uD8xx\uDCxx escapes is one character beyond the BMP.
    return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _ascii(char: str) -> str:
    if char in _WRITE_ESCAPES:
        return _WRITE_ESCAPES[char]
    if " " <= char <= "~":
        return char
    encoded = char.encode("utf-16-be", "surrogatepass")
    return "".join(
        f"\\u{int.from_bytes(encoded[i : i + 2], 'big'):04X}" for i in range(0, len(encoded), 2)
    )


def escape_value(value: str) -> str:
    """``value`` as a properties value: ASCII only, a leading blank kept by a backslash."""
    text = "".join(_ascii(char) for char in value)
    stripped = text.lstrip(" ")
    return "\\ " * (len(text) - len(stripped)) + stripped


def escape_key(key: str) -> str:
    """``key`` as a properties key (separators and blanks escaped)."""
    text = "".join("\\" + char if char in "=: #!" else _ascii(char) for char in key)
    return text


def _split(logical: str) -> tuple[str, str, str]:
    """(raw key, separator, raw value) of a logical line without its indentation."""
    position = 0
    while position < len(logical):
        char = logical[position]
        if char == "\\":
            position += 2
            continue
        if char in "=:" or char in _BLANKS:
            break
        position += 1
    position = min(position, len(logical))
    separator = _SEPARATOR.match(logical, position)
    end = separator.end() if separator else position
    return logical[:position], logical[position:end], logical[end:]


def _continues(content: str) -> bool:
    return (len(content) - len(content.rstrip("\\"))) % 2 == 1


def _pairs(lines: list[str]) -> list[_Pair]:
    pairs: list[_Pair] = []
    index = 0
    while index < len(lines):
        content = lines[index].rstrip("\r\n")
        stripped = content.lstrip(_BLANKS)
        if not stripped or stripped[0] in "#!":
            index += 1
            continue
        first, logical = index, stripped
        while _continues(logical) and index + 1 < len(lines):
            index += 1
            logical = logical[:-1] + lines[index].rstrip("\r\n").lstrip(_BLANKS)
        if _continues(logical):
            logical = logical[:-1]
        raw_key, separator, raw_value = _split(logical)
        indent = content[: len(content) - len(stripped)]
        pairs.append(_Pair(first, index, unescape(raw_key), raw_key, separator, raw_value, indent))
        index += 1
    return pairs


def edit_properties(data: bytes, rules: Sequence[Rule], problems: Problems) -> bytes:
    """Apply ``rules`` to a properties file, changing only the lines of the keys they set."""
    # surrogateescape: bytes that are not UTF-8 (a Latin-1 file) come back out unchanged.
    text = data.decode("utf-8", "surrogateescape")
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if "\r\n" in text else "\n"
    pairs = _pairs(lines)
    replaced: dict[int, tuple[int, str]] = {}
    appended: dict[str, str] = {}  # keys the file did not have: their values
    for rule in rules:
        found = False
        for pair in pairs:
            if pair.key != rule.match:
                continue
            found = True
            value = attempt(rule, unescape(pair.raw_value), problems)
            if value is None or escape_value(value) == pair.raw_value:
                continue
            ending = lines[pair.last][len(lines[pair.last].rstrip("\r\n")) :]
            line = f"{pair.indent}{pair.raw_key}{pair.separator or '='}{escape_value(value)}"
            replaced[pair.first] = (pair.last, line + ending)
            pair.raw_value = escape_value(value)
        if found:
            continue
        value = attempt(rule, appended.get(rule.match), problems)
        if value is not None and (rule.match in appended or rule.creates):
            appended[rule.match] = value
    if not replaced and not appended:
        return data
    out: list[str] = []
    index = 0
    while index < len(lines):
        if index in replaced:
            last, line = replaced[index]
            out.append(line)
            index = last + 1
        else:
            out.append(lines[index])
            index += 1
    if out and not out[-1].endswith(("\n", "\r")):
        out.append(newline)
    out.extend(
        f"{escape_key(key)}={escape_value(value)}{newline}" for key, value in appended.items()
    )
    return "".join(out).encode("utf-8", "surrogateescape")
