"""The panel's static files, under names that carry a hash of their content.

``/static/app.3f2a9c1b04d5.css`` can be cached for a year: a changed file gets a new name.
The files are read once when the app starts and served from memory
(:mod:`control_plane.web.setup`).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath
from typing import Final

STATIC_PREFIX: Final = "/static/"
IMMUTABLE: Final = "public, max-age=31536000, immutable"


# Text worth compressing: what a browser downloads on first load (xterm.js is 289 KB, 70 gzipped).
_COMPRESSIBLE: Final = ("text/", "application/javascript", "application/json")


@dataclass(frozen=True)
class Asset:
    """One file: its hashed name, content and type, and its gzip encoding when that is
    smaller (made once, at start-up)."""

    name: str
    body: bytes
    content_type: str
    gzipped: bytes | None = None


class AssetIndex:
    """Every static file by its plain name and by its hashed name."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self._by_plain: dict[str, Asset] = {}
        self._by_hashed: dict[str, Asset] = {}
        for plain, body in files.items():
            path = PurePosixPath(plain)
            digest = hashlib.sha256(body).hexdigest()[:12]
            hashed = str(path.with_name(f"{path.stem}.{digest}{path.suffix}"))
            kind = mimetypes.guess_type(plain)[0] or "application/octet-stream"
            asset = Asset(
                hashed, body, kind, _gzip(body) if kind.startswith(_COMPRESSIBLE) else None
            )
            self._by_plain[plain] = asset
            self._by_hashed[hashed] = asset

    @classmethod
    def from_package(cls) -> AssetIndex:
        root = resources.files("control_plane.web") / "static"
        files: dict[str, bytes] = {}

        def walk(folder: resources.abc.Traversable, prefix: str) -> None:
            for entry in folder.iterdir():
                if entry.is_dir():
                    walk(entry, f"{prefix}{entry.name}/")
                elif not entry.name.startswith("."):
                    files[f"{prefix}{entry.name}"] = entry.read_bytes()

        walk(root, "")
        return cls(files)

    def url(self, plain: str) -> str:
        """The address of ``plain`` (e.g. ``app.css``) under its hashed name."""
        return STATIC_PREFIX + self._by_plain[plain].name

    def find(self, hashed: str) -> Asset | None:
        return self._by_hashed.get(hashed)


@functools.lru_cache(maxsize=256)
def _gzip(body: bytes) -> bytes | None:
    # mtime=0: the same file always compresses to the same bytes; so a second app in the
    # process (the tests make thousands) takes them from the cache instead of level 9 again.
    packed = gzip.compress(body, compresslevel=9, mtime=0)
    return packed if len(packed) < len(body) else None
