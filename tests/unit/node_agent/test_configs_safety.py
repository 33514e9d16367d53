"""Configuration files in a volume on disk: what is refused, what is left byte for byte, what
is created, and rules that cannot hurt the start (a pathological regex, an alias bomb)."""

from __future__ import annotations

import os
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from node_agent.configs.apply import FileOutcome, apply_config_files
from node_agent.configs.keys import Attribute, Index, KeyPathError, Name, Wildcard, parse_key
from node_agent.configs.placeholders import PlaceholderValues
from shared.server_spec import ConfigFile, ServerSpec
from tests.support.factories import server_spec

OWNER = (os.getuid(), os.getgid())


def values() -> PlaceholderValues:
    spec = ServerSpec.model_validate(
        server_spec(uuid=str(uuid.uuid4()), allocations=[{"ip": "127.0.0.1", "port": 30000}])
    )
    return PlaceholderValues.of(spec, "172.18.0.1")


def config(path: str, parser: str, *rules: tuple[str, str] | tuple[str, str, str]) -> ConfigFile:
    replace: list[dict[str, Any]] = [
        {"match": r[0], "value": r[1], "if_value": r[2] if len(r) > 2 else None} for r in rules
    ]
    return ConfigFile.model_validate({"path": path, "parser": parser, "replace": replace})


def apply(volume: Path, *configs: ConfigFile) -> list[FileOutcome]:
    return apply_config_files(volume, configs, values(), OWNER)


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    path = tmp_path / "volume"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    (path / "server.properties").write_bytes(b"server-port=1\n")
    return path


def test_a_symlinked_file_is_refused_and_its_target_untouched(volume: Path, outside: Path) -> None:
    (volume / "server.properties").symlink_to(outside / "server.properties")
    [outcome] = apply(volume, config("server.properties", "properties", ("server-port", "2")))
    assert outcome.outcome == "refused"
    assert outcome.notice is not None
    assert "symlink" in outcome.notice
    assert (outside / "server.properties").read_bytes() == b"server-port=1\n"


def test_a_symlinked_directory_on_the_path_is_refused(volume: Path, outside: Path) -> None:
    (volume / "config").symlink_to(outside, target_is_directory=True)
    [outcome] = apply(volume, config("config/server.properties", "properties", ("a", "b")))
    assert outcome.outcome == "refused"
    assert (outside / "server.properties").read_bytes() == b"server-port=1\n"
    assert sorted(p.name for p in outside.iterdir()) == ["server.properties"]


def test_a_fifo_is_refused_without_blocking(volume: Path) -> None:
    os.mkfifo(volume / "pipe.ini")
    [outcome] = apply(volume, config("pipe.ini", "ini", ("a.b", "c")))
    assert outcome.outcome == "refused"
    assert stat.S_ISFIFO((volume / "pipe.ini").lstat().st_mode)


def test_a_file_over_the_cap_is_not_read(volume: Path) -> None:
    with (volume / "big.properties").open("wb") as big:
        big.truncate(100 * 1024 * 1024)
    (volume / "big.yml").write_bytes(b"a: " + b"x" * (1024 * 1024) + b"\n")
    outcomes = apply(
        volume,
        config("big.properties", "properties", ("a", "b")),
        config("big.yml", "yaml", ("a", "b")),
    )
    assert [outcome.outcome for outcome in outcomes] == ["refused", "refused"]
    assert "larger than 1 MiB" in outcomes[0].problems[0]
    assert "larger than 0.5 MiB" in outcomes[1].problems[0]
    assert (volume / "big.properties").stat().st_size == 100 * 1024 * 1024


@pytest.mark.parametrize(
    ("parser", "data"),
    [
        ("json", b'{"a": 1,\n'),
        ("yaml", b"a: [1, 2\nb: {\n"),
        ("toml", b"a = \n[b\n"),
        ("xml", b"<a><b></a>\n"),
        ("json", b"\xff\xfe not utf-8"),
    ],
)
def test_a_file_that_does_not_parse_is_left_byte_identical(
    volume: Path, parser: str, data: bytes
) -> None:
    (volume / "broken").write_bytes(data)
    (volume / "broken").chmod(0o640)
    before = (volume / "broken").stat()
    [outcome] = apply(volume, config("broken", parser, ("a", "2")))
    assert outcome.outcome == "unparsable"
    assert outcome.notice is not None
    assert outcome.notice.startswith("config file broken left as it was: ")
    after = (volume / "broken").stat()
    assert (volume / "broken").read_bytes() == data
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_file_its_parser_fails_on_otherwise_costs_only_that_file(volume: Path) -> None:
    """A game-planted JSON file with a number of 5,000 digits: ``json`` raises a plain
    ValueError (over Python's limit on converting digits), which stopped every file after it
    — the enforced server-port was never written, and the game started all the same."""
    (volume / "settings.json").write_bytes(b'{"motd": "x", "n": ' + b"9" * 5000 + b"}\n")
    (volume / "server.properties").write_bytes(b"server-port=1\n")

    planted, enforced = apply(
        volume,
        config("settings.json", "json", ("motd", "hello")),
        config("server.properties", "properties", ("server-port", "30000")),
    )

    assert planted.outcome == "unparsable"
    assert enforced.outcome == "changed"
    assert (volume / "server.properties").read_bytes() == b"server-port=30000\n"


def test_missing_files_are_created_with_their_directories_but_never_by_the_file_parser(
    volume: Path,
) -> None:
    outcomes = apply(
        volume,
        config("server.properties", "properties", ("server-port", "{{server.build.default.port}}")),
        config("plugins/proxy/config.yml", "yaml", ("listeners[0].host", "x"), ("a.b", "1")),
        config("conditional.json", "json", ("a", "1", "0")),
        config("start.sh", "file", ("PORT=", "PORT=1")),
    )
    assert [o.outcome for o in outcomes] == ["created", "created", "missing", "missing"]
    assert (volume / "server.properties").read_bytes() == b"server-port=30000\n"
    assert (volume / "plugins/proxy/config.yml").read_bytes() == b"a:\n  b: 1\n"
    assert not (volume / "conditional.json").exists()
    assert not (volume / "start.sh").exists()


def test_a_rewritten_file_keeps_its_mode_and_leaves_no_temporary_file(volume: Path) -> None:
    path = volume / "game.ini"
    path.write_bytes(b"[Server]\nPort=1\n")
    path.chmod(0o600)
    inode = path.stat().st_ino
    [outcome] = apply(volume, config("game.ini", "ini", ("Server.Port", "2")))
    assert outcome.outcome == "changed"
    assert path.read_bytes() == b"[Server]\nPort=2\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != inode  # renamed over, never written in place
    assert sorted(p.name for p in volume.iterdir()) == ["game.ini"]


def test_a_pathological_regex_costs_its_rule_not_the_start(volume: Path) -> None:
    (volume / "a.properties").write_bytes(b"evil=" + b"a" * 40 + b"!\nother=1\n")
    started = time.monotonic()
    [outcome] = apply(
        volume,
        config("a.properties", "properties", ("evil", "x", "regex:^(a|aa)+$"), ("other", "2")),
    )
    assert time.monotonic() - started < 5
    assert outcome.outcome == "changed"
    assert outcome.problems == ("evil: the regex took too long; not applied",)
    assert (volume / "a.properties").read_bytes() == b"evil=" + b"a" * 40 + b"!\nother=2\n"


def test_wildcards_over_a_yaml_alias_bomb_stop_at_the_visit_budget(volume: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(6)
    ]
    (volume / "bomb.yml").write_text("\n".join(lines) + "\n")
    before = (volume / "bomb.yml").read_bytes()
    started = time.monotonic()
    [outcome] = apply(volume, config("bomb.yml", "yaml", ("g.*.*.*.*.*.*", "y")))
    assert time.monotonic() - started < 10
    assert outcome.problems == ("g.*.*.*.*.*.*: matches too many keys; not applied",)
    assert (volume / "bomb.yml").read_bytes() == before


def test_key_paths() -> None:
    assert parse_key("listeners[0].host") == (Name("listeners"), Index(0), Name("host"))
    assert parse_key("servers.*.address") == (Name("servers"), Wildcard(), Name("address"))
    assert parse_key('hosts["a.b.c"][1]') == (Name("hosts"), Name("a.b.c"), Index(1))
    assert parse_key("S.property[@name='Port'].@value") == (
        Name("S"),
        Name("property"),
        Attribute("name", "Port"),
        Name("@value"),
    )
    for bad in ("a..b", ".a", "a.", "a[x]", "a[0"):
        with pytest.raises(KeyPathError):
            parse_key(bad)


def test_a_variable_with_characters_xml_cannot_hold_never_breaks_the_file(volume: Path) -> None:
    # A user's value with a control character (U+0001, U+000B …) written as it is made the
    # file ill-formed: the game could not read it, and the agent never again (a value fixed
    # later was not applied, the port neither), until someone edited the file by hand.
    (volume / "serverconfig.xml").write_text(
        '<ServerSettings><property name="ServerName" value="a" />'
        '<property name="ServerPort" value="1" /><Motd>hi</Motd></ServerSettings>\n'
    )
    rules = config(
        "serverconfig.xml",
        "xml",
        ("ServerSettings.property[@name='ServerName'].@value", "{{env.NAME}}"),
        ("ServerSettings.Motd", "{{env.NAME}}"),
        ("ServerSettings.property[@name='ServerPort'].@value", "{{server.build.default.port}}"),
    )

    def start(name: str) -> FileOutcome:
        spec = ServerSpec.model_validate(
            server_spec(
                uuid=str(uuid.uuid4()),
                allocations=[{"ip": "127.0.0.1", "port": 30000}],
                environment={"NAME": name},
            )
        )
        [outcome] = apply_config_files(volume, [rules], PlaceholderValues.of(spec, None), OWNER)
        return outcome

    outcome = start("evil\x01\x0bname")
    assert outcome.outcome == "changed"
    assert any("XML cannot hold" in problem for problem in outcome.problems), outcome.problems
    text = (volume / "serverconfig.xml").read_text()
    assert '<property name="ServerPort" value="30000" />' in text
    assert "\x01" not in text
    assert "\x0b" not in text

    outcome = start("fixed")
    assert outcome.outcome == "changed", outcome.problems
    text = (volume / "serverconfig.xml").read_text()
    assert '<property name="ServerName" value="fixed" />' in text
    assert "<Motd>fixed</Motd>" in text
