"""Patterns weighed before the ``regex`` package compiles them (it expands counted repeats),
and done markers, which RE2 bounds itself."""

from __future__ import annotations

import time

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.console_markers import MarkerError, check_marker
from shared.patterns import (
    MAX_WEIGHT,
    PatternError,
    PatternTooHeavy,
    check_condition,
    compile_guarded,
    repeat_problem,
)
from shared.server_spec import ConfigReplacement, ConsoleMarker

BOMBS = [
    ("(?:(?:x{65535}){65535})", "the repeat {65535} is above 1000"),
    ("x{1001}", "the repeat {1001} is above 1000"),
    ("a{,5000}", "the repeat {,5000} is above 1000"),
    ("a{2000,}", "the repeat {2000,} is above 1000"),
    ("(?:(?:a{100}){100}){100}", f"its repeats expand to more than {MAX_WEIGHT} items"),
    # Side by side, not nested: each is light, together they are not.
    ("(?:[a-z]{400}){200}" * 2, f"its repeats expand to more than {MAX_WEIGHT} items"),
    ("(?P<n>(?:a{50}|b{50}){1000})", f"its repeats expand to more than {MAX_WEIGHT} items"),
]


@pytest.mark.parametrize(("pattern", "reason"), BOMBS)
def test_heavy_patterns_are_refused_before_compiling(pattern: str, reason: str) -> None:
    started = time.process_time()
    assert repeat_problem(pattern) == reason
    with pytest.raises(PatternTooHeavy, match="too complex to compile"):
        compile_guarded(pattern)
    assert time.process_time() - started < 0.1


@pytest.mark.parametrize(
    "pattern",
    [
        r"^([\w\d._-]+)(\.jar)$",
        r"^[A-Za-z0-9 ]{1,40}$",
        r"^\d{1,3}(?:\.\d{1,3}){3}$",
        "(?:x{300}){300}",
        r"\p{L}{3}\N{DIGIT ONE}",  # braces of escapes are no repeats
        "a{x}[{5000}]",  # nor a literal brace, nor one in a class
        "^(a|a)*$",  # slow to match (a time limit's business), light to compile
    ],
)
def test_ordinary_patterns_compile(pattern: str) -> None:
    assert repeat_problem(pattern) is None
    assert compile_guarded(pattern).pattern == pattern


def test_a_pattern_the_compiler_refuses_is_a_pattern_error() -> None:
    with pytest.raises(PatternError, match="missing \\)"):
        compile_guarded("(a")


def test_config_conditions_are_checked_only_when_written_as_regex() -> None:
    assert check_condition(None) is None
    assert check_condition("x{99999}") == "x{99999}"  # a plain value to compare with
    assert check_condition("regex:^(\\d+)$") == "regex:^(\\d+)$"
    started = time.process_time()
    with pytest.raises(ValidationError) as caught:
        ConfigReplacement(match="k", value="v", if_value="regex:(?:(?:x{65535}){65535})")
    assert time.process_time() - started < 0.1
    [error] = caught.value.errors()
    assert error["loc"] == ("if_value",)
    assert error["msg"] == (
        "Value error, regex:'(?:(?:x{65535}){65535})' cannot be used: too complex to compile: "
        "the repeat {65535} is above 1000"
    )


@pytest.mark.parametrize(
    "expression", ["(?:(?:x{65535}){65535})", "(?:(?:x{1000}){1000})", "(?:(?:x{100}){100})"]
)
def test_done_markers_are_bounded_by_re2_itself(expression: str) -> None:
    # RE2 refuses any repeat over 1000, nested repeats counted together, and the program
    # size cap (1000 instructions) and max_mem (2 MiB) bound the rest.
    started = time.process_time()
    with pytest.raises(MarkerError, match="not a valid RE2 expression: invalid repetition size"):
        check_marker(f"regex:{expression}")
    with pytest.raises(ValidationError):
        TypeAdapter(ConsoleMarker).validate_python(f"regex:{expression}")
    assert time.process_time() - started < 0.1
