"""An egg file's bytes as plain data: strict JSON, or YAML without anchors, aliases or tags.

JSON is read as the agent reads signed bodies (``shared.strict_json``: UTF-8, no byte order
mark, every member named once, no NaN), then walked like every API body
(``check_input``: depth, exact numbers, storable text). YAML is read with PyYAML's safe
loader, refusing any anchor or alias (a "billion laughs" document is a few lines of them),
with YAML 1.2's booleans (``yes``/``no``/``on``/``off`` stay text, as Pelican's reader
keeps them) and dates kept as text. Either way the input is capped at
:data:`MAX_EGG_FILE_BYTES` before it is parsed.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import yaml

from control_plane.api.strict_input import MAX_DEPTH, check_input
from control_plane.errors import InvalidRequest, PayloadTooLarge
from shared.strict_json import NotStrictJson, loads

# The largest real eggs (with an icon as a data: URL) are a few hundred KiB.
MAX_EGG_FILE_BYTES: Final = 4 * 1024 * 1024
MAX_EGGS_PER_IMPORT: Final = 100
EggFormat = Literal["json", "yaml"]
YAML_MEDIA_TYPES: Final = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})


# libyaml's parser when PyYAML was built with it (about 20 times faster than the Python one).
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _EggYamlLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """The safe loader with YAML 1.2's booleans and no timestamps (see the module doc)."""


# The implicit resolvers are copied per class, so the base loader keeps its own.
_EggYamlLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp"}
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_EggYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _refuse_anchors(text: str) -> None:
    """Walk the document's events (nothing is built, no alias expanded): any anchor or
    alias refuses it, before the loader could make a structure grow from them."""
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise InvalidRequest("YAML anchors and aliases are not accepted in an egg")


def format_of(content_type: str, filename: str = "") -> EggFormat:
    """JSON unless the media type or the file name says YAML."""
    if content_type in YAML_MEDIA_TYPES or filename.lower().endswith((".yaml", ".yml")):
        return "yaml"
    return "json"


def read_eggs(raw: bytes, kind: EggFormat) -> list[dict[str, Any]]:
    """The eggs in ``raw``: one egg (an object) or several (a list of objects).

    400 for anything that is not strict JSON or safe YAML, or not eggs; 413 past the caps.
    """
    if len(raw) > MAX_EGG_FILE_BYTES:
        raise PayloadTooLarge(f"an egg file is at most {MAX_EGG_FILE_BYTES} bytes")
    data = _read_yaml(raw) if kind == "yaml" else _read_json(raw)
    try:
        check_input(data, "egg")
    except InvalidRequest as err:
        # Say what is wrong in the message too: the CLI shows only the message.
        where = "; ".join(f"{'.'.join(map(str, d.loc)) or 'egg'}: {d.msg}" for d in err.details)
        raise InvalidRequest(f"{err.message}: {where}" if where else err.message) from err
    eggs = data if isinstance(data, list) else [data]
    if not eggs:
        raise InvalidRequest("the file holds no egg")
    if len(eggs) > MAX_EGGS_PER_IMPORT:
        raise PayloadTooLarge(f"at most {MAX_EGGS_PER_IMPORT} eggs at once")
    for index, egg in enumerate(eggs):
        if not isinstance(egg, dict):
            raise InvalidRequest(f"egg {index} is not an object")
    return eggs


def _read_json(raw: bytes) -> Any:
    try:
        return loads(raw)
    except NotStrictJson as err:
        raise InvalidRequest(f"the egg is not strict JSON: {err.reason}") from err


def _read_yaml(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidRequest("the egg is not UTF-8") from err
    try:
        _refuse_anchors(text)
        data = yaml.load(text, Loader=_EggYamlLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or "not valid YAML"
        raise InvalidRequest(f"the egg is not valid YAML: {problem}{where}") from err
    except RecursionError as err:
        raise InvalidRequest(f"the egg is nested deeper than {MAX_DEPTH} levels") from err
    except ValueError as err:  # a number of more digits than Python converts
        raise InvalidRequest(f"the egg is not valid YAML: {err}"[:300]) from err
    return _plain(data, MAX_DEPTH)


def _plain(value: Any, depth: int) -> Any:
    """YAML's values as JSON's: text keys, no bytes or sets (safe_load makes nothing else)."""
    if depth < 0:
        raise InvalidRequest(f"the egg is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {_key(key): _plain(item, depth - 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item, depth - 1) for item in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    kind = type(value).__name__
    raise InvalidRequest(f"the egg holds a YAML value JSON has no form for ({kind})")


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None or isinstance(key, str | int | float):
        return "" if key is None else str(key)
    raise InvalidRequest("an egg's keys are text")
