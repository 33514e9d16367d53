"""The Laravel rules community eggs use beyond the basic ones (digits_between, alpha_num,
int, gt, present, not_in, ends_with, nullable:string), and their neighbours (digits, gte,
lt, lte, alpha, ip, lowercase, starts_with …): each translated as Laravel reads it, then
applied to values with the message a user gets.

The rule strings of the first table are copied from eggs of parkervcp/eggs and
pelican-eggs/* (counts over 774 eggs in the report of the branch that added them).
"""

from __future__ import annotations

import re

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.schemas.blueprints import BlueprintVariable
from control_plane.schemas.variable_values import value_problem
from control_plane.services.eggs.rules import translate_rules

Case = tuple[str, dict[str, object], list[str], list[tuple[str, str]]]

# rules, the fields they give, values Laravel takes, values Laravel refuses with our message
FROM_EGGS: list[Case] = [
    (
        "required|numeric|digits_between:1,3",  # 58 variables (player slots, percentages)
        {"type": "number", "min_length": 1, "max_length": 3, "format": "digits", "required": True},
        ["0", "20", "999", "007"],
        [
            ("", "required"),
            ("1000", "must be at most 3 digits long"),
            ("1.5", "may contain only the digits 0-9"),
            ("-1", "may contain only the digits 0-9"),
            ("ten", "must be a number"),
            ("\u0663", "must be a number"),
        ],
    ),
    (
        "required|numeric|digits_between:6,7",
        {"type": "number", "min_length": 6, "max_length": 7, "format": "digits", "required": True},
        ["120000", "0123456"],
        [
            ("12345", "must be at least 6 digits long"),
            ("12345678", "must be at most 7 digits long"),
        ],
    ),
    (
        "required|integer|digits_between:1,10",
        {
            "type": "integer",
            "min_length": 1,
            "max_length": 10,
            "format": "digits",
            "required": True,
        },
        ["1337", "7300"],
        [
            ("-5", "may contain only the digits 0-9"),
            ("12345678901", "must be at most 10 digits long"),
        ],
    ),
    (
        "required|digits_between:17,18",  # a Discord user id
        {
            "type": "string",
            "min_length": 17,
            "max_length": 18,
            "format": "digits",
            "required": True,
        },
        ["123456789012345678"],
        [
            ("Change This To Your Discord User ID", "may contain only the digits 0-9"),
            ("1234567890123456", "must be at least 17 digits long"),
        ],
    ),
    (
        "required|alpha_num|between:1,6",  # 11 variables (a version: "latest", "1234")
        {"type": "string", "min": 1, "max": 6, "format": "alpha_num", "required": True},
        ["latest", "1234", "Kart\u0117", "\u0663\u0664"],
        [
            ("1.19", "may contain only letters and digits"),
            ("my-map", "may contain only letters and digits"),
            ("1234567", "must be at most 6 characters"),
        ],
    ),
    (
        "required|string|alpha_num|size:32",
        {"type": "string", "min": 32, "max": 32, "format": "alpha_num", "required": True},
        ["a" * 32],
        [
            ("a" * 31, "must be exactly 32 characters"),
            ("a" * 31 + "_", "may contain only letters and digits"),
        ],
    ),
    (
        "nullable|alpha_num|max:20",
        {"type": "string", "max": 20, "format": "alpha_num", "required": False},
        ["", "Server1"],
        [("my server", "may contain only letters and digits")],
    ),
    (
        "required|int|between:0,60",  # int is Laravel's alias of integer
        {"type": "integer", "min": 0, "max": 60, "required": True},
        ["0", "60"],
        [("61", "must be at most 60"), ("1.5", "must be a whole number")],
    ),
    (
        "nullable|integer|gt:0",  # gt:0 on an integer: at least 1
        {"type": "integer", "min": 1, "required": False},
        ["", "1", "120"],
        [("0", "must be at least 1"), ("-3", "must be at least 1")],
    ),
    ("present", {"type": "string", "required": False}, ["", "anything"], []),
    ("nullable:string", {"type": "string", "required": False}, ["", "anything"], []),
    (
        "required|string|ends_with:==|size:88",  # a base64 key
        {"type": "string", "min": 88, "max": 88, "ends_with": ["=="], "required": True},
        ["A" * 86 + "=="],
        [("A" * 88, "must end with =="), ("A" * 87 + "=", "must end with ==")],
    ),
    (
        "required|string|not_in:anonymous",
        {"type": "string", "not_options": ["anonymous"], "required": True},
        ["Anonymous", "steamuser"],
        [("anonymous", "must not be anonymous"), ("", "required")],
    ),
]

# Rules no egg uses yet, with Laravel's meaning.
OTHERS: list[Case] = [
    (
        "required|digits:4",
        {"type": "string", "min_length": 4, "max_length": 4, "format": "digits", "required": True},
        ["0420"],
        [("420", "must be exactly 4 digits long"), ("42a0", "may contain only the digits 0-9")],
    ),
    (
        "nullable|max_digits:5",
        {"type": "string", "max_length": 5, "format": "digits", "required": False},
        ["", "12345"],
        [("123456", "must be at most 5 digits long")],
    ),
    (
        "numeric|gt:0.5|lte:10",
        {"type": "number", "min": 0.5, "exclusive_min": True, "max": 10, "required": True},
        ["0.51", "10"],
        [("0.5", "must be more than 0.5"), ("10.01", "must be at most 10")],
    ),
    (
        "numeric|gte:1|lt:100",
        {"type": "number", "min": 1, "max": 100, "exclusive_max": True, "required": True},
        ["1", "99.9"],
        [("100", "must be less than 100"), ("0.9", "must be at least 1")],
    ),
    (
        "integer|lt:10",
        {"type": "integer", "max": 9, "required": True},
        ["9"],
        [("10", "must be at most 9")],
    ),
    (
        "gt:0",  # a comparison with a number takes numeric values only
        {"type": "number", "min": 0, "exclusive_min": True, "required": True},
        ["0.1", "5"],
        [("abc", "must be a number"), ("0", "must be more than 0")],
    ),
    (
        "required|ip",
        {"type": "string", "format": "ip", "required": True},
        ["10.0.0.1", "::1", "::ffff:1.2.3.4", "2001:db8::8a2e:370:7334"],
        [
            ("01.2.3.4", "must be an IP address"),
            ("1.2.3", "must be an IP address"),
            ("fe80::1%eth0", "must be an IP address"),
            (" 1.2.3.4", "must be an IP address"),
        ],
    ),
    (
        "ipv4",
        {"type": "string", "format": "ipv4", "required": True},
        ["1.2.3.4"],
        [("::1", "must be an IPv4 address")],
    ),
    (
        "ipv6",
        {"type": "string", "format": "ipv6", "required": True},
        ["::1"],
        [("1.2.3.4", "must be an IPv6 address")],
    ),
    (
        "string|lowercase",
        {"type": "string", "format": "lowercase", "required": True},
        ["world_1", "123", "\u00e9t\u00e9"],
        [("World", "must not contain upper-case letters")],
    ),
    (
        "uppercase",
        {"type": "string", "format": "uppercase", "required": True},
        ["EU_WEST", "1"],
        [("Eu", "must not contain lower-case letters")],
    ),
    (
        "nullable|starts_with:http://,https://",
        {"type": "string", "starts_with": ["http://", "https://"], "required": False},
        ["", "https://x"],
        [("ftp://x", "must start with one of: http://, https://")],
    ),
    (
        "alpha",
        {"type": "string", "format": "alpha", "required": True},
        ["Kart\u0117"],
        [("abc1", "may contain only letters")],
    ),
    (
        "alpha_num:ascii",
        {"type": "string", "regex": "[A-Za-z0-9]+", "required": True},
        ["Abc123"],
        [("Kart\u0117", "does not match the required pattern")],
    ),
    (
        "required|alpha_dash:ascii",
        {"type": "string", "regex": "[-_A-Za-z0-9]+", "required": True},
        ["my-world_1"],
        [("m\u00fcnchen", "does not match the required pattern")],
    ),
    (
        "bail|sometimes|bool",
        {"type": "boolean", "options": ["0", "1"], "required": True},
        ["1"],
        [],
    ),
]


@pytest.mark.parametrize(("rules", "fields", "taken", "refused"), FROM_EGGS + OTHERS)
def test_rules_translate_and_judge_values_as_laravel_does(
    rules: str, fields: dict[str, object], taken: list[str], refused: list[tuple[str, str]]
) -> None:
    translation = translate_rules(rules)
    assert translation.unknown == []
    assert translation.fields == fields
    variable = BlueprintVariable(env="X", name="x", **translation.fields).model_dump()
    for value in taken:
        assert value_problem(variable, value) is None, value
    for value, problem in refused:
        assert value_problem(variable, value) == problem, value


def test_notes_say_how_laravel_reads_the_rule() -> None:
    assert "int: Laravel reads it as integer" in translate_rules("required|int").notes
    assert "nullable:string: Laravel ignores the parameter of nullable" in (
        translate_rules("nullable:string").notes
    )
    assert "present: no effect here (every variable always has a value)" in (
        translate_rules("present").notes
    )
    assert "gt:0 on an integer: min 1" in translate_rules("integer|gt:0").notes
    assert "digits_between:1,3: only the digits 0-9, counted as a length" in (
        translate_rules("numeric|digits_between:1,3").notes
    )
    assert translate_rules("gt:0").notes[0] == (
        "gt:0: Laravel's comparison with a number takes only numeric values: type number"
    )
    assert any(
        "Laravel 11 (Pterodactyl) also refuses" in n for n in translate_rules("not_in:1").notes
    )


@pytest.mark.parametrize(
    ("rules", "unknown", "reason"),
    [
        ("array", ["array"], "array: a variable's value is text, which Laravel's array refuses"),
        ("confirmed", ["confirmed"], "confirmed: compares with a second field"),
        ("unique:servers,name", ["unique:servers,name"], "unique:servers,name: looks the value up"),
        ("exists:users,id", ["exists:users,id"], "exists:users,id: looks the value up"),
        ("gt:MAX_PLAYERS", ["gt:MAX_PLAYERS"], "gt:MAX_PLAYERS: gt with a field name"),
        # max measures a length or a value depending on the rules' order in Laravel.
        ("gt:0|max:10", ["max:10"], "max:10: measured as a length or a value"),
        ("alpha_num|url", ["url"], "url: a variable has one format, already alpha_num"),
        ("starts_with:", ["starts_with:"], "starts_with:: no value passes starts_with"),
        ("ends_with:a|ends_with:b", ["ends_with:b"], "ends_with:b: one ends_with per variable"),
        ("digits_between:1", ["digits_between:1"], "digits_between:1: digits_between takes 2"),
        ("integer|gt:5|lt:6", ["gt:5", "lt:6"], "min/max: no value can pass these bounds"),
        ("digits_between:5,2", ["digits_between:5,2"], "digits: no value can have that many"),
        ("alpha_num:ascii|regex:/^a+$/", ["regex:/^a+$/"], "regex:/^a+$/: a variable has one"),
    ],
)
def test_rules_we_cannot_enforce_say_why(rules: str, unknown: list[str], reason: str) -> None:
    translation = translate_rules(rules)
    assert translation.unknown == unknown
    assert any(note.startswith(reason) for note in translation.notes), translation.notes
    BlueprintVariable(env="X", name="x", **translation.fields)


def test_an_empty_value_is_refused_by_the_rules_that_fail_on_null() -> None:
    """The panel turns "" into null: digits (Laravel 13), alpha_num, gt, ip, ends_with… fail
    on it, not_in and present do not."""
    for rules in ("digits_between:0,3", "max_digits:3", "alpha_num", "gt:0", "ip", "ends_with:x"):
        assert translate_rules(rules).fields["required"] is True, rules
    for rules in ("not_in:a", "present", "nullable|digits:3"):
        assert translate_rules(rules).fields["required"] is False, rules


def _laravel_digits_between(value: str, low: int, high: int) -> bool:
    # ValidatesAttributes::validateDigitsBetween
    return not re.search("[^0-9]", value) and low <= len(value.encode()) <= high


def _laravel_alpha_num(value: str) -> bool:
    # ValidatesAttributes::validateAlphaNum: preg_match('/\A[\pL\pM\pN]+\z/u')
    return regex.fullmatch(r"[\p{L}\p{M}\p{N}]+", value) is not None


@settings(max_examples=300, deadline=None)
@given(value=st.text(alphabet="09a\u0663\u0301\u00e9 -_\n.", min_size=1, max_size=5))
def test_digits_between_and_alpha_num_take_what_laravel_takes(value: str) -> None:
    digits = BlueprintVariable(env="X", name="x", **translate_rules("digits_between:2,4").fields)
    assert (value_problem(digits.model_dump(), value) is None) == _laravel_digits_between(
        value, 2, 4
    )
    alpha_num = BlueprintVariable(env="X", name="x", **translate_rules("alpha_num").fields)
    assert (value_problem(alpha_num.model_dump(), value) is None) == _laravel_alpha_num(value)
