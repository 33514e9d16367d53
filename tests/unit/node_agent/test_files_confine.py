"""Confinement by construction: descriptors, never string checks, with openat2 and without."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from node_agent.files import confine, writes
from node_agent.files.confine import (
    make_directories,
    open_directory,
    open_regular_file,
    open_root,
    openat2_works,
)
from node_agent.files.denylist import DenyList
from node_agent.files.entries import list_directory
from node_agent.files.errors import (
    FileExists,
    FileNotFound,
    InvalidPath,
    PathRefused,
    WrongFileType,
)
from node_agent.files.paths import TEMP_NAME, check_name, parse_file_path, parse_path
from node_agent.files.tree import change_mode, delete
from node_agent.files.writes import AtomicWrite
from shared.files_api import MAX_PATH_BYTES

OWNER = (os.getuid(), os.getgid())


@pytest.fixture(params=[True, False], ids=["openat2", "stepwise"])
def resolution(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run each test with openat2 and with the per-component fallback."""
    use_openat2: bool = request.param
    monkeypatch.setattr(confine, "openat2_works", lambda: use_openat2)
    return use_openat2


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A volume with a real directory and links to a host directory and a host file."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text("secret")
    root = tmp_path / "volume"
    (root / "real" / "inner").mkdir(parents=True)
    (root / "real" / "file.txt").write_text("inside")
    (root / "dirlink").symlink_to(host)
    (root / "filelink").symlink_to(host / "secret")
    (root / "real" / "up").symlink_to("..")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture
def root_fd(volume: Path) -> Iterator[int]:
    fd = open_root(volume)
    yield fd
    os.close(fd)


def test_openat2_is_available_on_this_kernel() -> None:
    assert openat2_works()


def test_directories_below_the_root_open(root_fd: int, resolution: bool) -> None:
    fd = open_directory(root_fd, ("real", "inner"))
    os.close(fd)


@pytest.mark.parametrize("path", ["dirlink", "dirlink/x", "real/up", "real/up/real", "filelink"])
def test_any_symlink_on_the_way_is_refused(root_fd: int, resolution: bool, path: str) -> None:
    with pytest.raises(PathRefused):
        open_directory(root_fd, parse_path(path))


def test_missing_and_non_directory_components_are_told_apart(
    root_fd: int, resolution: bool
) -> None:
    with pytest.raises(FileNotFound):
        open_directory(root_fd, ("nope",))
    with pytest.raises(WrongFileType):
        open_directory(root_fd, ("real", "file.txt"))


@pytest.mark.parametrize("text", ["../etc", "a/../../b", "a/\x00b", "x" * 256])
def test_climbing_or_malformed_paths_are_refused_before_any_io(text: str) -> None:
    with pytest.raises(InvalidPath):
        parse_path(text)
    assert parse_path("/a//./b/") == ("a", "b")


def test_a_write_in_progress_is_in_no_path_and_no_listing(root_fd: int, volume: Path) -> None:
    """Every operation names its paths through these parsers (files API, SFTP, archives,
    pulls): the temporary file of a write in progress is none of them, and is not listed."""
    with AtomicWrite.begin(root_fd, ("real", "file.txt"), OWNER) as write:
        temp = next(p.name for p in (volume / "real").iterdir() if TEMP_NAME.fullmatch(p.name))
        for parse in (parse_path, parse_file_path):
            with pytest.raises(InvalidPath, match="being written by the agent"):
                parse(f"/real/{temp}")
            with pytest.raises(InvalidPath, match="being written by the agent"):
                parse(f"/{temp}/below")
        with pytest.raises(InvalidPath, match="being written by the agent"):
            check_name(temp)
        listing = list_directory(root_fd, ("real",), DenyList([]), 100)
        assert [entry.name for entry in listing.entries] == ["file.txt", "inner", "up"]
        write.write(b"new")
    # A name of the same look that the agent does not make is a file like any other.
    assert parse_file_path("/.stellar-write-notes") == (".stellar-write-notes",)


def test_a_path_is_limited_in_utf8_bytes_as_the_file_api_says() -> None:
    name = "\u00e9" * 127  # 254 bytes
    longest = "/".join([name] * (MAX_PATH_BYTES // 255)) + "/" + "x" * (MAX_PATH_BYTES % 255)
    assert len(longest.encode()) == MAX_PATH_BYTES
    assert len(parse_path(longest)) == MAX_PATH_BYTES // 255 + 1
    with pytest.raises(InvalidPath, match=f"at most {MAX_PATH_BYTES} bytes"):
        parse_path(longest + "x")


def test_reading_a_link_or_a_fifo_is_refused(root_fd: int) -> None:
    with pytest.raises(PathRefused):
        open_regular_file(root_fd, "filelink", ("filelink",))
    with pytest.raises(PathRefused):
        open_regular_file(root_fd, "fifo", ("fifo",))  # and does not hang on the FIFO


def test_mkdir_p_refuses_a_link_in_place_of_a_directory(
    root_fd: int, resolution: bool, volume: Path
) -> None:
    with pytest.raises(PathRefused):
        make_directories(root_fd, ("dirlink", "new"), OWNER)
    assert not (volume.parent / "host" / "new").exists()
    os.close(make_directories(root_fd, ("made", "deep", "er"), OWNER))
    assert (volume / "made" / "deep" / "er").is_dir()


def test_writes_refuse_links_and_leave_nothing_behind(
    root_fd: int, resolution: bool, volume: Path
) -> None:
    for path in ("filelink", "dirlink/new", "dirlink/secret"):
        with pytest.raises(PathRefused):
            AtomicWrite.begin(root_fd, parse_file_path(path), OWNER)
    assert (volume.parent / "host" / "secret").read_text() == "secret"
    assert sorted(os.listdir(volume.parent / "host")) == ["secret"]


def test_chmod_and_delete_refuse_a_link_and_delete_unlinks_links_inside(
    root_fd: int, volume: Path
) -> None:
    host = volume.parent / "host"
    before = (host / "secret").stat().st_mode
    with pytest.raises(PathRefused):
        change_mode(root_fd, ("filelink",), 0o777)
    with pytest.raises(PathRefused):
        delete(root_fd, ("dirlink",))
    delete(root_fd, ("real",))  # holds ``up`` -> ``..``
    assert (host / "secret").stat().st_mode == before
    assert not (volume / "real").exists()
    assert (volume / "dirlink").is_symlink()


def test_an_interrupted_write_keeps_the_old_file(root_fd: int, volume: Path) -> None:
    with AtomicWrite.begin(root_fd, ("real", "file.txt"), OWNER) as write:
        write.write(b"half of the new ver")
    assert (volume / "real" / "file.txt").read_text() == "inside"
    assert sorted(os.listdir(volume / "real")) == ["file.txt", "inner", "up"]


@pytest.fixture(params=[True, False], ids=["exchange", "no-exchange"])
def swapping(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test with renameat2's exchange and as on a filesystem without it."""
    if not request.param:
        monkeypatch.setattr(writes, "exchange", lambda *_args: False)
    return bool(request.param)


def test_a_write_that_may_not_create_never_makes_the_file(
    root_fd: int, volume: Path, swapping: bool
) -> None:
    """``create=False`` (a save by someone who may change files but not create them): the
    file must be there when the write starts and when it is committed; removed in between (by
    the game, or by the saver who may delete) it is not made again, and a directory that took
    its name keeps it."""
    real = volume / "real"
    with pytest.raises(FileNotFound, match="does not exist"):
        AtomicWrite.begin(root_fd, ("real", "missing.txt"), OWNER, create=False)
    (real / "file.txt").chmod(0o640)
    with AtomicWrite.begin(root_fd, ("real", "file.txt"), OWNER, create=False) as write:
        write.write(b"changed")
        write.commit()
    assert (real / "file.txt").read_text() == "changed"
    assert (real / "file.txt").stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(real)) == ["file.txt", "inner", "up"]

    with AtomicWrite.begin(root_fd, ("real", "file.txt"), OWNER, create=False) as write:
        write.write(b"made again?")
        (real / "file.txt").unlink()
        with pytest.raises(FileNotFound, match="does not exist"):
            write.commit()
    assert sorted(os.listdir(real)) == ["inner", "up"]

    (real / "file.txt").write_text("back")
    with AtomicWrite.begin(root_fd, ("real", "file.txt"), OWNER, create=False) as write:
        write.write(b"over a directory?")
        (real / "file.txt").unlink()
        (real / "file.txt").mkdir()
        (real / "file.txt" / "world.dat").write_text("kept")
        with pytest.raises(WrongFileType, match="is a directory"):
            write.commit()
    assert (real / "file.txt" / "world.dat").read_text() == "kept"
    assert sorted(os.listdir(real)) == ["file.txt", "inner", "up"]

    # Narrowed to neither (both permissions gone while open): nothing is made or replaced.
    (real / "new.txt").write_text("there")
    with AtomicWrite.begin(root_fd, ("real", "new.txt"), OWNER) as write:
        write.write(b"neither")
        write.narrow(create=False, overwrite=False)
        with pytest.raises(PathRefused, match="neither make nor replace"):
            write.commit()
    assert (real / "new.txt").read_text() == "there"
    assert sorted(os.listdir(real)) == ["file.txt", "inner", "new.txt", "up"]


def test_a_write_that_must_not_replace_does_not_replace_a_file_made_meanwhile(
    root_fd: int, volume: Path
) -> None:
    """``overwrite=False`` (an upload by someone who may create files but not change them, an
    SFTP exclusive open, a copy): a file that appears between the check and the commit (the
    game wrote it) is kept, and the write is refused."""
    with pytest.raises(FileExists, match="exists already"):
        AtomicWrite.begin(root_fd, ("real", "file.txt"), OWNER, overwrite=False)
    with AtomicWrite.begin(root_fd, ("real", "new.txt"), OWNER, overwrite=False) as write:
        write.write(b"the upload")
        (volume / "real" / "new.txt").write_text("the game's")
        with pytest.raises(FileExists, match="exists already"):
            write.commit()
    assert (volume / "real" / "new.txt").read_text() == "the game's"
    assert sorted(os.listdir(volume / "real")) == ["file.txt", "inner", "new.txt", "up"]
    with AtomicWrite.begin(root_fd, ("real", "newer.txt"), OWNER, overwrite=False) as write:
        write.write(b"made")
        write.commit()
    assert (volume / "real" / "newer.txt").read_text() == "made"
