"""A server owner's files and a blueprint's rules made to stall the agent: each must cost a
bounded time, never the event loop (``re`` holds the GIL, so a worker thread is no shield)
nor minutes of a start that holds the server's lock."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from node_agent.configs.apply import (
    EDITORS,
    PARSER_CAPS,
    FileOutcome,
    apply_config_files,
    build_rules,
)
from node_agent.configs.placeholders import PlaceholderValues
from node_agent.configs.rules import REGEX_BUDGET_SECONDS, Problems
from shared.server_spec import ConfigFile, ConfigReplacement, ServerSpec
from tests.support.factories import server_spec

OWNER = (os.getuid(), os.getgid())
# Backtracks exponentially on "aaaa…a!": each try runs into its time limit.
SLOW = "regex:^(a|a)*$"
SLOW_TEXT = "a" * 40 + "!"
T = TypeVar("T")


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


async def worst_stall(blocking: Callable[[], T]) -> tuple[T, float]:
    """``blocking()`` run in a worker thread as the start runs it, and the longest time the
    event loop could not run a task meanwhile."""
    gaps: list[float] = []
    ticking, done = asyncio.Event(), asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        ticking.set()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await ticking.wait()  # the clock runs before the work does: a stall at once is seen
    try:
        result = await asyncio.to_thread(blocking)
    finally:
        done.set()
        await task
    return result, max(gaps, default=0.0)


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    path = tmp_path / "volume"
    path.mkdir()
    return path


async def test_an_ini_key_followed_by_a_long_run_of_blanks_never_stalls_the_loop(
    volume: Path,
) -> None:
    # 20 KB: the old backtracking pattern took seconds under the GIL (40 KB: 10 s).
    planted = "k" + " " * 20_000 + "\n" + " " * 20_000 + "\n"
    original = "[network]\nserver_port = 3979\n" + planted
    (volume / "openttd.cfg").write_text(original)
    rule = ("network.server_port", "{{server.allocations.default.port}}")
    [outcome], stall = await worst_stall(lambda: apply(volume, config("openttd.cfg", "ini", rule)))
    assert stall < 0.5
    assert outcome.outcome == "changed"
    assert (volume / "openttd.cfg").read_text() == original.replace("3979", "30000")


async def test_an_xml_doctype_made_to_backtrack_never_stalls_the_loop(volume: Path) -> None:
    # The old prolog pattern took 2^n steps on this (n = 25: 17 s under the GIL).
    planted = '<?xml version="1.0"?>\n<!DOCTYPE ' + "[]" * 25 + "[<a/>\n"
    (volume / "serverconfig.xml").write_text(planted)
    rule = ("ServerSettings.Port", "1")
    [outcome], stall = await worst_stall(
        lambda: apply(volume, config("serverconfig.xml", "xml", rule))
    )
    assert stall < 0.5
    assert outcome.outcome == "unparsable"
    assert (volume / "serverconfig.xml").read_text() == planted


def test_a_value_continued_over_a_million_lines_is_read_in_linear_time(volume: Path) -> None:
    # 4 MiB of "a\" lines (the parser itself: the properties cap is 1 MiB): joining each
    # to the text so far took minutes.
    data = b"k=" + b"a\\\n" * (4 * 1024 * 1024 // 3)
    problems = Problems()
    rules = build_rules(config("server.properties", "properties", ("k", "v")), values(), problems)
    started = time.process_time()
    edited = EDITORS["properties"](data, rules, problems)
    # CPU time (this process's): the other test process on the machine cannot add to it.
    assert time.process_time() - started < 2
    assert edited == b"k=v\n"
    assert problems.items == []
    # At the cap, through the start's path.
    (volume / "server.properties").write_bytes(data[: PARSER_CAPS["properties"] - 2] + b"\n")
    started = time.process_time()
    [outcome] = apply(volume, config("server.properties", "properties", ("k", "v")))
    assert time.process_time() - started < 2
    assert outcome.outcome == "changed"
    assert (volume / "server.properties").read_bytes() == b"k=v\n"


@pytest.mark.parametrize(("parser", "cap"), [("properties", 1), ("ini", 2), ("xml", 2)])
def test_line_keeping_parsers_have_caps_of_their_own(volume: Path, parser: str, cap: int) -> None:
    (volume / "big.cfg").write_bytes(b"k=v\n" * (cap * 1024 * 1024 // 4 + 1))
    [outcome] = apply(volume, config("big.cfg", parser, ("k", "x")))
    assert outcome.outcome == "refused"
    assert outcome.problems == (f"/big.cfg is larger than {cap} MiB, the cap for it",)


def test_a_file_of_more_lines_than_its_rules_can_be_tried_on_is_refused(volume: Path) -> None:
    # Each rule is tried on every line: 200 rules over 100,000 empty lines took seconds
    # (256 over 8 MiB of them, minutes).
    (volume / "motd.txt").write_bytes(b"\n" * 100_000)
    rules = [(f"key{n}", f"key{n}=1") for n in range(200)]
    started = time.process_time()
    [outcome] = apply(volume, config("motd.txt", "file", *rules))
    assert time.process_time() - started < 1
    assert outcome.outcome == "refused"
    assert outcome.problems == (
        "100001 lines for 200 rules: at most 80000 lines for that many are read before a start",
    )
    (volume / "motd.txt").write_bytes(b"\n" * 79_999)
    [outcome] = apply(volume, config("motd.txt", "file", *rules))
    assert outcome.outcome == "unchanged"


@pytest.mark.parametrize(
    ("name", "parser", "line", "match"),
    [
        ("motd.txt", "file", SLOW_TEXT, "a"),
        ("server.properties", "properties", f"evil={SLOW_TEXT}", "evil"),
        ("game.ini", "ini", f"evil={SLOW_TEXT}", "evil"),
    ],
)
def test_a_regex_that_times_out_once_is_not_tried_on_the_rest_of_the_file(
    volume: Path, name: str, parser: str, line: str, match: str
) -> None:
    # Sixteen matching lines: 16 x the 0.25 s limit (4 s) before, one limit now.
    (volume / name).write_text((line + "\n") * 16 + "other=1\n")
    started = time.process_time()
    [outcome] = apply(volume, config(name, parser, (match, "x", SLOW), ("other", "other=2")))
    assert time.process_time() - started < 1.5
    assert outcome.problems == (f"{match}: the regex took too long; not applied",)
    text = (volume / name).read_text()
    assert text.startswith((line + "\n") * 16)  # the slow rule changed no line


def test_all_the_regex_conditions_of_one_start_share_one_budget(volume: Path) -> None:
    # Eight files, each with a rule that runs into the 0.25 s limit: 2 s before, the
    # start's budget (1 s) now; the files after it say so.
    configs = []
    for number in range(8):
        (volume / f"{number}.properties").write_text(f"evil={SLOW_TEXT}\nother=1\n")
        configs.append(
            config(f"{number}.properties", "properties", ("evil", "x", SLOW), ("other", "2"))
        )
    started = time.process_time()
    outcomes = apply(volume, *configs)
    assert time.process_time() - started < REGEX_BUDGET_SECONDS + 0.6
    assert [outcome.outcome for outcome in outcomes] == ["changed"] * 8  # "other" set in each
    assert outcomes[0].problems == ("evil: the regex took too long; not applied",)
    ran_out = "evil: the 1 s this start gives regex conditions ran out; not applied"
    assert outcomes[-1].problems == (ran_out,)
    assert outcomes[-1].notice == f"config file 7.properties set, but: {ran_out}"


@pytest.mark.parametrize(
    "expression", ["(?:(?:x{65535}){65535})", "x{5000}", "(?:(?:a{100}){100}){100}"]
)
def test_the_rule_builder_refuses_a_compile_bomb_without_compiling_it(expression: str) -> None:
    # As a node could get it from a control plane that did not check it: never validated.
    replacement = ConfigReplacement.model_construct(
        match="k", value="v", if_value=f"regex:{expression}"
    )
    problems = Problems()
    started = time.process_time()
    rules = build_rules(
        ConfigFile.model_construct(
            path="a.properties", parser="properties", replace=(replacement,)
        ),
        values(),
        problems,
    )
    assert time.process_time() - started < 0.5
    assert rules == []
    [problem] = problems.items
    assert problem.startswith(f"k: bad regex:{expression!r} (too complex to compile: ")
