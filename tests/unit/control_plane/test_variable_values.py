"""A blueprint variable's rules on one value: types, options, formats, patterns and their
time cap, and what a blueprint may declare."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError

from control_plane.schemas.blueprints import BlueprintVariable
from control_plane.schemas.variable_values import (
    MATCH_TIMEOUT_SECONDS,
    MAX_VALUE_LENGTH,
    value_problem,
)


def rules(**fields: Any) -> dict[str, Any]:
    return BlueprintVariable(env="X", name="x", **fields).model_dump()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0.5", None),
        ("-0", "must be at least 0.1"),
        ("2", None),
        ("2.0001", "must be at most 2"),
        ("1e-1", None),
        ("+1", "must be a number"),
        (" 1", "must be a number"),
        ("1e99999", "must be a number"),
        ("NaN", "must be a number"),
        ("inf", "must be a number"),
        ("\u0661.5", "must be a number"),
    ],
)
def test_a_number_is_a_decimal_in_ascii_digits_within_its_bounds(
    value: str, problem: str | None
) -> None:
    variable = rules(type="number", min=0.1, max=2)
    assert value_problem(variable, value) == problem


def test_min_equal_to_max_says_exactly() -> None:
    assert value_problem(rules(min=3, max=3), "ab") == "must be exactly 3 characters"
    assert value_problem(rules(type="integer", min=3, max=3), "4") == "must be exactly 3"
    assert value_problem(rules(type="number", min=0.5, max=0.5), "0.50") is None


def test_options_are_exact_text_and_a_long_list_is_shortened_in_the_message() -> None:
    assert value_problem(rules(options=["Easy", "Hard"]), "easy") == "must be one of: Easy, Hard"
    many = rules(options=[f"option-{n:03}" for n in range(100)])
    message = value_problem(many, "nope")
    assert message is not None
    assert message.endswith("…")
    assert len(message) < 250


def test_an_empty_value_passes_every_rule_unless_required() -> None:
    strict = {"options": ["a"], "format": "url", "regex": "^x$", "min": 3}
    assert value_problem(rules(**strict), "") is None
    assert value_problem(rules(required=True, **strict), "") == "required"


def test_patterns_are_ascii_unless_they_open_with_u_and_may_use_pcre_syntax() -> None:
    assert value_problem(rules(regex=r"^\w+$"), "caf\u00e9") is not None
    assert value_problem(rules(regex=r"(?u)^\w+$"), "caf\u00e9") is None
    assert value_problem(rules(regex=r"(?u)^(?<word>\p{L}+)$"), "caf\u00e9") is None
    assert value_problem(rules(regex=r"^(?<word>[a-z]+)\h[a-z]++$"), "ab\tcd") is None


def test_a_runaway_pattern_is_stopped_at_its_time_cap_and_the_value_refused() -> None:
    variable = rules(regex="^(a|aa)+$", default="aaaa")
    started = time.monotonic()
    problem = value_problem(variable, "a" * (MAX_VALUE_LENGTH - 1) + "!")
    elapsed = time.monotonic() - started
    assert problem == "took too long to check against the required pattern"
    assert elapsed < MATCH_TIMEOUT_SECONDS * 20


def test_a_stored_pattern_that_cannot_compile_is_a_message_not_a_crash() -> None:
    """A blueprint row may predate a check (older versions compiled patterns with ``re``)."""
    variable = {"env": "X", "regex": "(unclosed"}
    assert value_problem(variable, "xy") == (
        "has a pattern that cannot be used: ask an administrator"
    )


def test_a_pattern_that_would_blow_up_when_compiled_is_refused_without_compiling() -> None:
    # The regex package expands nested counted repeats when it compiles: 23 GB for this one.
    bomb = "^(?:(?:x{65535}){65535})$"
    started = time.process_time()
    with pytest.raises(ValidationError) as caught:
        BlueprintVariable.model_validate(rules(regex=bomb))
    assert "too complex to compile: the repeat {65535} is above 1000" in str(caught.value)
    # Stored before this check: a message for the user, the bomb still never compiled.
    assert value_problem({"env": "X", "regex": bomb}, "xy") == (
        "has a pattern that cannot be used: ask an administrator"
    )
    assert time.process_time() - started < 0.5


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min": 0.5}, "min and max of this string variable must be whole numbers, not 0.5"),
        (
            {"type": "integer", "max": 2.5},
            "min and max of this integer variable must be whole numbers",
        ),
        ({"options": []}, "List should have at least 1 item"),
        ({"options": ["a", "b"], "default": "c"}, "default: must be one of: a, b"),
        ({"format": "url", "default": "example.com"}, "default: must be an http:// or https://"),
        ({"format": "alpha_dash", "default": "a b"}, "default: may contain only letters"),
        ({"format": "email"}, "Input should be 'alpha', 'alpha_num', 'alpha_dash', 'digits'"),
        ({"type": "number", "default": "x"}, "default: must be a number"),
        ({"type": "number", "min": float("inf")}, "Input should be a finite number"),
        ({"regex": "(?<n>a)\\k<n>"}, "not a valid regular expression: bad escape"),
        ({"type": "integer", "exclusive_min": True}, "exclusive_min needs min"),
        ({"min": 1, "exclusive_min": True}, "exclusive_min applies to integer and number"),
        (
            {"type": "number", "min": 1, "max": 1, "exclusive_max": True},
            "min must be below max when either is exclusive",
        ),
        ({"min_length": 3, "max_length": 2}, "min_length must not exceed max_length"),
        ({"min_length": -1}, "Input should be greater than or equal to 0"),
        ({"starts_with": [""]}, "String should have at least 1 character"),
        ({"not_options": ["a"], "default": "a"}, "default: must not be a"),
        ({"format": "digits", "max_length": 2, "default": "123"}, "default: must be at most 2"),
    ],
)
def test_a_variable_whose_rules_or_default_do_not_hold_is_refused(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(".", r"\.")):
        BlueprintVariable(env="X", name="x", **fields)
