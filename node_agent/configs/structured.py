"""The ``json``, ``yaml`` and ``toml`` parsers: parse, apply the rules as a tree, write back.

- TOML keeps its comments, order and formatting (tomlkit).
- YAML keeps its comments, order, quotes and anchors, with the file's indentation guessed
  (ruamel.yaml's round-trip mode, which builds no Python object from a tag).
- JSON has no comments; it is written back with the key order and the indentation of the
  file (a file on one line stays on one line), non-ASCII text as it is.

A file that is empty (or only whitespace) is an empty document, so that a missing file can
be created with the rules' keys, as Wings does.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from typing import Any, Final

import tomlkit
import tomlkit.exceptions
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent

from node_agent.configs.rules import Problems, Rule
from node_agent.configs.text import Unparsable, decode, encode
from node_agent.configs.tree import apply_to_tree

_JSON_INDENT: Final = re.compile(r"\n([ \t]+)\S")


def edit_json(data: bytes, rules: Sequence[Rule], problems: Problems) -> bytes:
    """Apply ``rules`` to a JSON document (its root must be an object or an array)."""
    text, bom = decode(data)
    if not text.strip():
        document: Any = {}
    else:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as err:
            raise Unparsable(f"not valid JSON ({err})") from err
    if not isinstance(document, dict | list):
        raise Unparsable("the JSON document is not an object or an array")
    if not apply_to_tree(document, rules, problems, dict):
        return data
    found = _JSON_INDENT.search(text)
    if found:
        out = json.dumps(document, indent=found[1], ensure_ascii=False)
    elif text.strip():
        out = json.dumps(document, ensure_ascii=False)  # it was on one line: it stays so
    else:
        out = json.dumps(document, indent=4, ensure_ascii=False)
    return encode(out + ("\n" if text.endswith("\n") or not text.strip() else ""), bom)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line the game wrote on one
    return yaml


def edit_yaml(data: bytes, rules: Sequence[Rule], problems: Problems) -> bytes:
    """Apply ``rules`` to a YAML document whose root is a mapping (or empty)."""
    text, bom = decode(data)
    yaml = _yaml()
    try:
        document, indent, sequence_indent = load_yaml_guess_indent(text, yaml=yaml)
    except YAMLError as err:
        raise Unparsable(f"not valid YAML ({_first_line(err)})") from err
    except (ValueError, TypeError, RecursionError) as err:
        raise Unparsable(f"not valid YAML ({err})") from err
    if document is None:
        document = CommentedMap()
    if not isinstance(document, CommentedMap):
        raise Unparsable("the YAML document is not a mapping")
    if not apply_to_tree(document, rules, problems, CommentedMap):
        return data
    indent = indent or 2
    yaml.indent(mapping=indent, sequence=indent, offset=sequence_indent or 0)
    out = io.StringIO()
    yaml.dump(document, out)
    return encode(out.getvalue(), bom)


def edit_toml(data: bytes, rules: Sequence[Rule], problems: Problems) -> bytes:
    """Apply ``rules`` to a TOML document, keeping its comments and layout."""
    text, bom = decode(data)
    try:
        document = tomlkit.parse(text)
    except (tomlkit.exceptions.TOMLKitError, ValueError, RecursionError) as err:
        raise Unparsable(f"not valid TOML ({_first_line(err)})") from err
    if not apply_to_tree(document, rules, problems, tomlkit.table):
        return data
    return encode(tomlkit.dumps(document), bom)


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return " ".join(line.strip() for line in lines[:3])[:200] if lines else type(err).__name__
