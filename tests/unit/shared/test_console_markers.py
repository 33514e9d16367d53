"""Done markers: plain text or ``regex:`` RE2 expressions, refused at validation when they do
not compile, and matched in time linear in the line whatever the game prints."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from shared.console_markers import MarkerError, check_marker, compile_markers
from shared.server_spec import ServerSpec
from tests.support.factories import server_spec

MINECRAFT_DONE = r'regex:^\[[0-9:]+ INFO\]: Done \([0-9.]+s\)! For help, type "help"'


def test_a_plain_marker_is_found_anywhere_in_the_line() -> None:
    markers = compile_markers(["Server started", "Listening on"])

    assert markers.find("[12:00:01] Server started.") == "Server started"
    assert markers.find("net: Listening on 0.0.0.0:27015") == "Listening on"
    assert markers.find("server started") is None
    assert markers.find("Server") is None


def test_a_regex_marker_is_searched_in_the_line_as_re2() -> None:
    markers = compile_markers([MINECRAFT_DONE, "regex:ready in \\d+ ms$"])

    line = '[10:42:07 INFO]: Done (3.214s)! For help, type "help"'
    assert markers.find(line) == MINECRAFT_DONE
    assert markers.find("[10:42:07 INFO]: Done (soon)! For help") is None
    assert markers.find("world ready in 812 ms") == "regex:ready in \\d+ ms$"
    assert markers.find("world ready in 812 ms, saving") is None
    # Text markers are plain text: no expression is read in them.
    assert compile_markers(["Done (*)"]).find("Done (*) ok") == "Done (*)"
    assert compile_markers(["Done (*)"]).find("Done (3s)") is None


def test_no_markers_is_falsy_and_finds_nothing() -> None:
    markers = compile_markers([])

    assert not markers
    assert markers.find("anything") is None
    assert compile_markers(["x"])


def test_markers_are_compiled_once() -> None:
    assert compile_markers(["regex:a+b"]) is compile_markers(("regex:a+b",))


def test_non_ascii_and_binary_looking_lines_are_matched_as_text() -> None:
    markers = compile_markers(["regex:prêt\\s+à jouer", "\x07bell"])

    assert markers.find("serveur prêt   à jouer") == "regex:prêt\\s+à jouer"
    assert markers.find("\x00\x01\x07bell\xff") == "\x07bell"
    # A lone surrogate cannot be UTF-8: it is searched as "?" rather than raising.
    assert markers.find("\udcff prêt à jouer") == "regex:prêt\\s+à jouer"


@pytest.mark.parametrize(
    ("marker", "line"),
    [
        # With a backtracking engine each of these takes about 2**n steps on its line.
        ("regex:(a+)+$", "a" * 4095 + "!"),
        ("regex:(x|x)*y", "x" * 4096),
        ("regex:^(\\w+\\s?)*$", "word " * 819 + "!"),
    ],
)
def test_a_line_made_to_backtrack_is_matched_in_linear_time(marker: str, line: str) -> None:
    markers = compile_markers([marker])

    started = time.process_time()
    found = [markers.find(line) for _ in range(100)]
    elapsed = time.process_time() - started

    assert found == [None] * 100
    assert elapsed < 1.0, f"100 lines of 4 KiB took {elapsed:.2f} s"


@pytest.mark.parametrize(
    ("marker", "reason"),
    [
        ("regex:(?=Done)", "invalid perl operator: (?="),
        ("regex:(a)\\1", "invalid escape sequence: \\1"),
        ("regex:Done (", "missing ): Done ("),
        ("regex:[z-a]", "invalid character class range: z-a"),
        ("regex:", "a 'regex:' marker needs an expression after the prefix"),
        ("regex:[^x]{1000}y", "too complex to search every console line for"),
        ("regex:\\pL{1000}", "pattern too large - compile failed"),
    ],
)
def test_a_marker_that_does_not_compile_is_refused_by_the_spec(marker: str, reason: str) -> None:
    with pytest.raises(MarkerError, match=r"regex|RE2|complex"):
        check_marker(marker)
    with pytest.raises(ValidationError) as caught:
        ServerSpec.model_validate(server_spec(startup_done=["Done", marker]))

    [error] = caught.value.errors()
    assert error["loc"] == ("startup_done", 1)
    assert reason in error["msg"]


def test_valid_markers_pass_the_spec_unchanged() -> None:
    spec = ServerSpec.model_validate(server_spec(startup_done=["Done", MINECRAFT_DONE]))

    assert spec.startup_done == ("Done", MINECRAFT_DONE)
