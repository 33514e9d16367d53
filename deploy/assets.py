#!/usr/bin/env python3
"""Vendor the panel's third-party browser code from the npm registry (``make assets``).

Each package is fetched at the pinned version below as the registry's tarball, checked
against the registry's ``dist.integrity`` (SHA-512), and the files the panel uses are written
under ``control_plane/web/static/vendor/<package>/`` with the package's licence text.
``MANIFEST.json`` there records, for each file, the package, version, licence, source URL and
SHA-256; ``tests/unit/control_plane/test_vendored_assets.py`` checks the committed files
against it. No build step: the files are served as they are, by content hash.

Usage: deploy/assets.py            download and write everything
       deploy/assets.py --check    only check the committed files against the manifest
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

REGISTRY: Final = "https://registry.npmjs.org"
ROOT: Final = Path(__file__).resolve().parents[1]
VENDOR: Final = ROOT / "control_plane" / "web" / "static" / "vendor"
MANIFEST: Final = VENDOR / "MANIFEST.json"


@dataclass(frozen=True)
class Package:
    """One npm package: where its files go and which ones (tarball path → file name)."""

    name: str
    version: str
    folder: str
    files: dict[str, str]
    licence_file: str = "package/LICENSE"


PACKAGES: Final = [
    Package("htmx.org", "2.0.4", "htmx", {"package/dist/htmx.min.js": "htmx.min.js"}),
    Package(
        "@xterm/xterm",
        "5.5.0",
        "xterm",
        {"package/lib/xterm.js": "xterm.js", "package/css/xterm.css": "xterm.css"},
    ),
    Package(
        "@xterm/addon-fit",
        "0.10.0",
        "xterm-addon-fit",
        {"package/lib/addon-fit.js": "addon-fit.js"},
    ),
    Package(
        "uplot",
        "1.6.32",
        "uplot",
        {
            "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
            "package/dist/uPlot.min.css": "uPlot.min.css",
        },
    ),
    Package(
        "codemirror",
        "5.65.21",
        "codemirror",
        {
            "package/lib/codemirror.js": "codemirror.js",
            "package/lib/codemirror.css": "codemirror.css",
            "package/mode/javascript/javascript.js": "mode-javascript.js",
            "package/mode/yaml/yaml.js": "mode-yaml.js",
            "package/mode/properties/properties.js": "mode-properties.js",
            "package/mode/shell/shell.js": "mode-shell.js",
            "package/mode/xml/xml.js": "mode-xml.js",
            "package/mode/toml/toml.js": "mode-toml.js",
        },
    ),
]


def _get(url: str) -> bytes:
    # Only the registry's https URLs reach here (see ``vendor``).
    request = urllib.request.Request(url, headers={"User-Agent": "stellarstack-assets"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        body: bytes = response.read()
    return body


def _check_integrity(body: bytes, integrity: str, what: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise SystemExit(f"{what}: the registry gives no SHA-512 integrity ({integrity!r})")
    actual = base64.b64encode(hashlib.sha512(body).digest()).decode()
    if actual != expected:
        raise SystemExit(f"{what}: the tarball does not match the registry's integrity")


def vendor(package: Package) -> list[dict[str, Any]]:
    """Download ``package``, write its files and licence; their manifest entries."""
    what = f"{package.name}@{package.version}"
    meta = json.loads(_get(f"{REGISTRY}/{package.name}/{package.version}"))
    tarball_url = meta["dist"]["tarball"]
    if not tarball_url.startswith(REGISTRY + "/"):
        raise SystemExit(f"{what}: tarball outside the registry: {tarball_url}")
    tarball = _get(tarball_url)
    _check_integrity(tarball, meta["dist"]["integrity"], what)
    wanted = {**package.files, package.licence_file: "LICENSE.txt"}
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name in wanted:
                extracted = archive.extractfile(member)
                assert extracted is not None
                found[member.name] = extracted.read()
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise SystemExit(f"{what}: not in the tarball: {', '.join(missing)}")
    folder = VENDOR / package.folder
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for source, name in wanted.items():
        (folder / name).write_bytes(found[source])
        entries.append(
            {
                "file": f"{package.folder}/{name}",
                "package": package.name,
                "version": package.version,
                "licence": meta.get("license", "UNKNOWN"),
                "source": f"{tarball_url}#{source}",
                "sha256": hashlib.sha256(found[source]).hexdigest(),
            }
        )
    print(f"{what}: {len(entries)} files", file=sys.stderr)
    return entries


def check(vendor: Path = VENDOR) -> list[str]:
    """What differs between the manifest and the files on disk (nothing: an empty list)."""
    manifest_file = vendor / MANIFEST.name
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    problems = []
    listed = set()
    for entry in manifest["files"]:
        path = vendor / entry["file"]
        listed.add(path)
        if not path.is_file():
            problems.append(f"{entry['file']}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            problems.append(f"{entry['file']}: SHA-256 differs from the manifest")
    for path in vendor.rglob("*"):
        if path.is_file() and path != manifest_file and path not in listed:
            problems.append(f"{path.relative_to(vendor)}: not in the manifest")
    return problems


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    entries = [entry for package in PACKAGES for entry in vendor(package)]
    manifest = {"registry": REGISTRY, "files": entries}
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
