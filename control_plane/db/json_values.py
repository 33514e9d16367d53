"""JSON columns read back: orjson (several times the standard library's speed on the short
lists and objects we store), and the standard library for what orjson refuses — NaN and
Infinity, integers past 64 bits, lone surrogates — so every stored value reads as before.

Every engine reads with it (``json_deserializer``); values are still written by the
standard library's encoder, so the stored text is unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(text: str | bytes) -> Any:
    """The value of one stored JSON text."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
