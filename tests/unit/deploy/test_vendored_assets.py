"""The vendored browser code is what ``deploy/assets.py`` recorded: every file listed with its
package, version, licence, registry URL and SHA-256, every listed file present and unchanged,
nothing unlisted, each package's licence text beside its code; and the app serves each file
under its content hash."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

from control_plane.web.assets import STATIC_PREFIX, AssetIndex

VENDOR = Path(__file__).resolve().parents[3] / "control_plane" / "web" / "static" / "vendor"
PINNED = re.compile(r"^\d+\.\d+\.\d+$")


def manifest() -> list[dict[str, str]]:
    files: list[dict[str, str]] = json.loads((VENDOR / "MANIFEST.json").read_text())["files"]
    return files


def test_every_vendored_file_matches_the_manifest_and_nothing_else_is_there() -> None:
    entries = manifest()
    listed = set()
    for entry in entries:
        path = VENDOR / entry["file"]
        body = path.read_bytes()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], entry["file"]
        assert PINNED.fullmatch(entry["version"]), entry
        assert entry["source"].startswith("https://registry.npmjs.org/"), entry
        assert entry["licence"] in ("MIT", "0BSD"), entry
        listed.add(path)
    on_disk = {p for p in VENDOR.rglob("*") if p.is_file() and p.name != "MANIFEST.json"}
    assert on_disk == listed


def test_each_package_carries_its_licence_text_and_the_panel_s_libraries() -> None:
    entries = manifest()
    packages = {entry["package"] for entry in entries}
    assert packages == {"htmx.org", "@xterm/xterm", "@xterm/addon-fit", "uplot", "codemirror"}
    for package in packages:
        licences = [
            e for e in entries if e["package"] == package and e["file"].endswith("LICENSE.txt")
        ]
        assert len(licences) == 1, package
        text = (VENDOR / licences[0]["file"]).read_text()
        assert "Permission" in text or "permission" in text, package


def _assets_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "assets_script", VENDOR.parents[3] / "deploy" / "assets.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up while the module runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_script_s_check_finds_a_changed_a_missing_and_an_unlisted_file(tmp_path: Path) -> None:
    script = _assets_script()
    copy = tmp_path / "vendor"
    shutil.copytree(VENDOR, copy)
    assert script.check(copy) == []
    changed, removed = manifest()[0]["file"], manifest()[1]["file"]
    body = bytearray((copy / changed).read_bytes())
    body[0] ^= 1
    (copy / changed).write_bytes(bytes(body))
    (copy / removed).unlink()
    (copy / "htmx" / "extra.js").write_text("alert(1)")
    assert sorted(script.check(copy)) == sorted(
        [
            f"{changed}: SHA-256 differs from the manifest",
            f"{removed}: missing",
            "htmx/extra.js: not in the manifest",
        ]
    )


def test_vendored_files_are_served_by_content_hash() -> None:
    index = AssetIndex.from_package()
    for entry in manifest():
        url = index.url(f"vendor/{entry['file']}")
        assert url.startswith(STATIC_PREFIX + "vendor/")
        assert entry["sha256"][:12] in url
        found = index.find(url.removeprefix(STATIC_PREFIX))
        assert found is not None
        assert hashlib.sha256(found.body).hexdigest() == entry["sha256"]
