"""The panel's static files through the real app: the vendored ones by content hash, cached
for a year, gzipped for a client that accepts it (the same bytes once unpacked), as they are
for one that does not."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from tests.support.panel import Panel

VENDOR = Path(__file__).resolve().parents[3] / "control_plane" / "web" / "static" / "vendor"


def xterm_entry() -> dict[str, str]:
    files = json.loads((VENDOR / "MANIFEST.json").read_text())["files"]
    [entry] = [e for e in files if e["file"] == "xterm/xterm.js"]
    return dict(entry)


@pytest.mark.parametrize("accept", ["gzip, deflate, br", "br;q=1, GZIP;q=0.5"])
async def test_vendored_code_is_served_gzipped_to_who_accepts_it(panel: Panel, accept: str) -> None:
    entry = xterm_entry()
    path = f"/static/vendor/xterm/xterm.{entry['sha256'][:12]}.js"
    visitor = await panel.browser()
    response = await visitor.request(
        "GET", path, headers={"Accept-Encoding": accept}, auto_decompress=False
    )
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Vary"] == "Accept-Encoding"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    packed = await response.read()
    assert len(packed) < 100_000  # 289 KB of JavaScript
    assert hashlib.sha256(gzip.decompress(packed)).hexdigest() == entry["sha256"]


@pytest.mark.parametrize("accept", ["identity", "gzip;q=0", "deflate", ""])
async def test_vendored_code_is_served_as_it_is_otherwise(panel: Panel, accept: str) -> None:
    entry = xterm_entry()
    visitor = await panel.browser()
    response = await visitor.request(
        "GET",
        f"/static/vendor/xterm/xterm.{entry['sha256'][:12]}.js",
        headers={"Accept-Encoding": accept},
        auto_decompress=False,
    )
    assert response.status == 200
    assert "Content-Encoding" not in response.headers
    assert hashlib.sha256(await response.read()).hexdigest() == entry["sha256"]
