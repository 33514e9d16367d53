"""Restoring into a volume: all or nothing, and a crash at any phase is settled by recover()."""

from __future__ import annotations

import gzip
import io
import os
import secrets
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from node_agent.backups import swap
from node_agent.backups.archive import write_archive
from node_agent.backups.extract import BackupDamaged, extract_backup
from node_agent.files.denylist import DenyList
from node_agent.files.errors import PathRefused
from shared.backup_format import BackupWriter

OWNER = (os.getuid(), os.getgid())


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): ("link " + os.readlink(p))
        if p.is_symlink()
        else ("dir" if p.is_dir() else p.read_text())
        for p in sorted(root.rglob("*"))
    }


def make_tree(root: Path, label: str) -> None:
    (root / "world").mkdir(parents=True)
    (root / "world" / "level.dat").write_text(f"{label} level")
    (root / f"{label}.txt").write_text(label)
    (root / "link").symlink_to("/etc/passwd")


@pytest.fixture
def root_fd(tmp_path: Path) -> Iterator[int]:
    volume = tmp_path / "volume"
    volume.mkdir()
    make_tree(volume, "old")
    fd = os.open(volume, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def backup_of(tree: Path, target: Path, key: bytes, backup_id: uuid.UUID) -> None:
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    with target.open("wb") as sink:
        writer = BackupWriter(sink, key, backup_id)
        write_archive(fd, DenyList([]), writer, 1 << 40, threading.Event())  # type: ignore[arg-type]
        writer.close()
    os.close(fd)


def test_backup_and_restore_round_trip_replaces_the_tree(tmp_path: Path, root_fd: int) -> None:
    volume = tmp_path / "volume"
    source = tmp_path / "source"
    make_tree(source, "new")
    key, backup_id = secrets.token_bytes(32), uuid.uuid4()
    backup_of(source, tmp_path / "b.stbk", key, backup_id)
    phases: list[str] = []

    stage = swap.make_stage(root_fd)
    tree = extract_backup(
        tmp_path / "b.stbk", key, backup_id, stage, OWNER, 10**9, threading.Event()
    )
    os.close(stage)
    swap.swap_in(root_fd, phases.append)

    assert (tree.files, tree.symlinks) == (2, 1)
    assert phases == ["swap-out", "swap-in", "cleanup"]
    assert snapshot(volume) == snapshot(source)


def test_a_wrong_key_writes_nothing_outside_the_stage(tmp_path: Path, root_fd: int) -> None:
    volume = tmp_path / "volume"
    before = snapshot(volume)
    backup_id = uuid.uuid4()
    backup_of(volume, tmp_path / "b.stbk", secrets.token_bytes(32), backup_id)
    stage = swap.make_stage(root_fd)
    with pytest.raises(BackupDamaged):
        extract_backup(
            tmp_path / "b.stbk",
            secrets.token_bytes(32),
            backup_id,
            stage,
            OWNER,
            10**9,
            threading.Event(),
        )
    os.close(stage)
    swap.discard(root_fd, swap.STAGE)
    assert snapshot(volume) == before


def test_a_failure_as_the_swap_starts_leaves_the_live_files(tmp_path: Path, root_fd: int) -> None:
    volume = tmp_path / "volume"
    old = snapshot(volume)
    os.close(swap.make_stage(root_fd))
    make_tree(volume / swap.STAGE, "new")

    def journal(phase: str) -> None:
        if phase == "swap-in":
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        swap.swap_in(root_fd, journal)
    assert snapshot(volume) == old


def test_recover_from_a_killed_swap_out_brings_the_old_files_back(
    tmp_path: Path, root_fd: int
) -> None:
    volume = tmp_path / "volume"
    old = snapshot(volume)
    os.mkdir(volume / swap.STAGE)
    make_tree(volume / swap.STAGE, "new")
    os.mkdir(volume / swap.ASIDE)
    os.rename(volume / "world", volume / swap.ASIDE / "world")  # killed mid swap-out

    assert swap.recover(root_fd, "swap-out") is False
    assert snapshot(volume) == old


def test_recover_from_a_killed_swap_in_finishes_it(tmp_path: Path, root_fd: int) -> None:
    volume = tmp_path / "volume"
    os.mkdir(volume / swap.STAGE)
    make_tree(volume / swap.STAGE, "new")
    new = snapshot(volume / swap.STAGE)
    os.mkdir(volume / swap.ASIDE)
    for name in ("world", "old.txt", "link"):
        os.rename(volume / name, volume / swap.ASIDE / name)
    os.rename(volume / swap.STAGE / "world", volume / "world")  # killed mid swap-in

    assert swap.recover(root_fd, "swap-in") is True
    assert snapshot(volume) == new


def test_a_symlink_entry_cannot_carry_a_later_entry_out_of_the_stage(
    tmp_path: Path, root_fd: int
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    source = tmp_path / "source"
    source.mkdir()
    (source / "a").symlink_to(outside)
    key, backup_id = secrets.token_bytes(32), uuid.uuid4()
    # A hand-made tar: the link ``a``, then a file ``a/planted`` (as a forged backup would).
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w|") as tar:
        link = tarfile.TarInfo("a")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tar.addfile(link)
        planted = tarfile.TarInfo("a/planted")
        planted.size = 2
        tar.addfile(planted, io.BytesIO(b"hi"))
    with (tmp_path / "b.stbk").open("wb") as sink:
        writer = BackupWriter(sink, key, backup_id)
        writer.write(raw.getvalue())
        writer.close()

    stage = swap.make_stage(root_fd)
    with pytest.raises(PathRefused):
        extract_backup(tmp_path / "b.stbk", key, backup_id, stage, OWNER, 10**9, threading.Event())
    os.close(stage)
    assert list(outside.iterdir()) == []
