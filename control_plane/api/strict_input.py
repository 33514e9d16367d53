"""Input as the API accepts it: strict JSON bodies, and text that every database can store.

Bodies are parsed by orjson, which refuses more than RFC 8259 allows: NaN and Infinity,
numbers that overflow a double (``1e309``, a 5000-digit integer), invalid UTF-8, lone
surrogates (escaped or encoded), a byte-order mark, nesting past 1024 levels. Duplicate names
in one object: the last wins, as with ``json`` and ``JSON.parse``.

Then the parsed body, and any other parsed input, is walked without recursion
(:func:`check_input`) for what the API refuses although JSON allows it:

- nesting deeper than :data:`MAX_DEPTH` levels (no model nests nearly as deep);
- numbers beyond ±(2**53 - 1): a double cannot hold them exactly (I-JSON, RFC 7493), and
  orjson reads integers past 64 bits as floats, which an ``int`` field would take inexactly;
- text holding U+0000 (PostgreSQL cannot store it) or an unpaired surrogate (no encoding
  can: query strings and headers can carry one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

from control_plane.errors import InvalidRequest
from shared.errors import ErrorDetail

MAX_DEPTH = 64
MAX_EXACT_NUMBER = 2**53 - 1
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"
_TEXT = "must not contain NUL or unpaired surrogates"
_NUMBER = f"numbers must lie within ±{MAX_EXACT_NUMBER}"


def unstorable(text: str) -> bool:
    """Whether ``text`` holds a NUL or an unpaired surrogate."""
    return _UNSTORABLE.search(text) is not None


def parse_json_body(raw: bytes) -> Any:
    """The body's JSON value, or :class:`InvalidRequest` for anything this module refuses."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        # orjson's messages name the problem and its position, never the input's bytes.
        if err.msg.startswith("depth limit"):
            raise InvalidRequest(f"the request body is {_TOO_DEEP}") from err
        raise InvalidRequest(
            f"the request body is not valid JSON: {err.msg} (at character {err.pos})"
        ) from err
    check_input(data, "request body")
    return data


def check_input(data: Any, what: str) -> None:
    """Refuse (400) deep nesting, inexact numbers and unstorable text anywhere in ``data``.

    The error's ``loc`` names the top-level field the problem is in.
    """
    if isinstance(data, dict):
        for key in data:
            if unstorable(key):
                raise _refuse(what, [], f"a key {_TEXT}")
        parts: Iterable[tuple[str | int, Any]] = data.items()
    elif isinstance(data, list):
        parts = enumerate(data)
    else:
        problem = _problem(data, MAX_DEPTH)
        if problem is not None:
            raise _refuse(what, [], problem)
        return
    for step, value in parts:
        problem = _problem(value, MAX_DEPTH - 1)
        if problem == _TOO_DEEP:
            raise InvalidRequest(f"the {what} is {_TOO_DEEP}")
        if problem is not None:
            raise _refuse(what, [step], problem)


def _problem(value: Any, max_depth: int) -> str | None:
    """What is wrong in ``value``, or None; breadth first, one loop per level, no recursion."""
    if value.__class__ is not dict and value.__class__ is not list:
        return _scalar_problem(value)
    search = _UNSTORABLE.search
    level: list[Any] = [value]
    depth = 1
    while level:
        if depth > max_depth:
            return _TOO_DEEP
        deeper: list[Any] = []
        for container in level:
            if container.__class__ is dict:
                for key in container:
                    if search(key) is not None:
                        return f"a key {_TEXT}"
                items = container.values()
            else:
                items = container
            # Dispatch on the exact class (orjson makes nothing else): this loop runs for
            # every value of the body.
            for item in items:
                kind = item.__class__
                if kind is str:
                    if search(item) is not None:
                        return _TEXT
                elif kind is int or kind is float:
                    if not -MAX_EXACT_NUMBER <= item <= MAX_EXACT_NUMBER:
                        return _NUMBER
                elif kind is dict or kind is list:
                    deeper.append(item)
                elif (problem := _scalar_problem(item)) is not None:
                    return problem
        level = deeper
        depth += 1
    return None


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return _TEXT if unstorable(value) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if -MAX_EXACT_NUMBER <= value <= MAX_EXACT_NUMBER else _NUMBER


def _refuse(what: str, loc: list[str | int], message: str) -> InvalidRequest:
    detail = ErrorDetail(loc=loc, msg=message, type="value_error")
    return InvalidRequest(f"invalid {what}", details=[detail])
