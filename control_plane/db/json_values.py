"""JSON columns read back: orjson (several times the standard library's speed on the short
lists and objects we store), and the standard library wherever orjson would read a value
otherwise — NaN and Infinity and lone surrogates (orjson refuses them), and integers of 19
digits or more (orjson reads those past 64 bits as floats, silently) — so every stored
value reads as before.

Every engine reads with it (``json_deserializer``); values are still written by the
standard library's encoder, so the stored text is unchanged.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson

# A run of 19 digits: any integer past 64 bits has one (the text may also be a long
# fraction or a string of digits; the standard library reads those the same, only slower).
_LONG_NUMBER: Final = re.compile(r"\d{19}")


def loads(text: str | bytes) -> Any:
    """The value of one stored JSON text."""
    if isinstance(text, bytes | bytearray):
        text = text.decode()
    if _LONG_NUMBER.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)
