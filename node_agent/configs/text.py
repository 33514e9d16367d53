"""Bytes to text and back for the parsers, and the error of a file that does not parse."""

from __future__ import annotations

import codecs


class Unparsable(ValueError):
    """The file is not what its parser reads; it is left exactly as it was."""


def decode(data: bytes) -> tuple[str, bool]:
    """The file's text (UTF-8) and whether it began with a byte-order mark."""
    bom = data.startswith(codecs.BOM_UTF8)
    try:
        return data[len(codecs.BOM_UTF8) if bom else 0 :].decode("utf-8"), bom
    except UnicodeDecodeError as err:
        raise Unparsable(f"not UTF-8 text (byte {err.start})") from err


def encode(text: str, bom: bool) -> bytes:
    """``text`` as UTF-8, with the byte-order mark the file had."""
    return (codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8")
