"""Every path the installer touches, relocatable under a prefix (``--prefix``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from node_agent.provision.systemd import DEFAULT_CONFIG_FILE, DEFAULT_DATA_DIR, systemd_escape_path


@dataclass(frozen=True)
class Layout:
    """Every path the installer touches, under ``prefix`` (``/`` on a real node)."""

    prefix: Path

    def _at(self, path: str) -> Path:
        return self.prefix / path.lstrip("/")

    @property
    def config_dir(self) -> Path:
        return self._at("/etc/stellar-agent")

    @property
    def config_file(self) -> Path:
        return self._at(DEFAULT_CONFIG_FILE)

    @property
    def tls_dir(self) -> Path:
        return self.config_dir / "tls"

    @property
    def data_dir(self) -> Path:
        return self._at(DEFAULT_DATA_DIR)

    @property
    def pool_dir(self) -> Path:
        return self.data_dir / "pool"

    @property
    def pool_image(self) -> Path:
        return self.data_dir / "pool.img"

    @property
    def unit_dir(self) -> Path:
        return self._at("/etc/systemd/system")

    @property
    def share_dir(self) -> Path:
        return self._at("/usr/share/stellar-agent/deploy")

    @property
    def mount_unit(self) -> str:
        return systemd_escape_path(self.pool_dir) + ".mount"

    @property
    def is_live_system(self) -> bool:
        return self.prefix == Path("/")
