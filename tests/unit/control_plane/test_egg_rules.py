"""An egg variable's Laravel rules, translated and then applied to values as Laravel would.

The rule strings are those of community eggs (pterodactyl/game-eggs, parkervcp/eggs,
pelican-eggs): each is translated, the fields must make a valid BlueprintVariable, and values
Laravel takes (or refuses) must be taken (or refused) by our checks.
"""

from __future__ import annotations

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.schemas.blueprints import BlueprintVariable
from control_plane.schemas.variable_values import value_problem
from control_plane.services.eggs.rules import (
    laravel_split,
    split_rules,
    translate_rules,
)

JAR = r"required|regex:/^([\w\d._-]+)(\.jar)$/"

# rules, the fields they give, values Laravel takes, values Laravel refuses
CASES: list[tuple[str | list[str], dict[str, object], list[str], list[str]]] = [
    (
        "required|string|max:20",
        {"type": "string", "required": True, "max": 20},
        ["latest", "x" * 20],
        ["", "x" * 21],
    ),
    ("nullable|string", {"type": "string", "required": False}, ["", "anything at all"], []),
    (
        JAR,
        {"type": "string", "required": True, "regex": r"^([\w\d._-]+)(\.jar)$"},
        ["server.jar", "paper-1.20.4_b1.jar"],
        ["", "server.zip", "../x.jar ", "a b.jar", "serv\u00e9r.jar", "x.jar\n"],
    ),
    (
        "required|numeric|between:1,100",
        {"type": "number", "required": True, "min": 1, "max": 100},
        ["1", "100", "2.5", "1e2", ".5e1"],
        ["", "0.99", "100.01", "ten", "1,5", "\u0663"],
    ),
    (
        "required|string|in:true,false",
        {"type": "string", "required": True, "options": ["true", "false"]},
        ["true", "false"],
        ["", "TRUE", "1", "yes"],
    ),
    (
        "required|integer|min:1|max:65535",
        {"type": "integer", "required": True, "min": 1, "max": 65535},
        ["1", "25565", "65535"],
        ["", "0", "65536", "1.5", "port"],
    ),
    (
        "required|boolean",
        {"type": "boolean", "required": True, "options": ["0", "1"]},
        ["0", "1"],
        ["", "true", "false", "2"],
    ),
    (
        "required|alpha_dash|between:1,10",
        {"type": "string", "required": True, "min": 1, "max": 10, "format": "alpha_dash"},
        ["world_1", "my-map", "Kartė"],
        ["", "my map", "a/b", "x" * 11, "semi;colon"],
    ),
    (
        "nullable|url",
        {"type": "string", "required": False, "format": "url"},
        ["", "https://example.com/pack.zip", "http://10.0.0.1:8080/x?y=1"],
        ["example.com", "ftp://example.com/x", "https://", "https://a b.com", "javascript:x"],
    ),
    (
        "required|string|size:4",
        {"type": "string", "required": True, "min": 4, "max": 4},
        ["abcd"],
        ["abc", "abcde"],
    ),
    (
        "required|integer|size:4",
        {"type": "integer", "required": True, "min": 4, "max": 4},
        ["4"],
        ["abcd", "5"],
    ),
    (
        ["required", "regex:/^(survival|creative)$/"],
        {"type": "string", "required": True, "regex": "^(survival|creative)$"},
        ["survival", "creative"],
        ["adventure", "survival|creative"],
    ),
]


@pytest.mark.parametrize(("rules", "fields", "taken", "refused"), CASES)
def test_community_rules_translate_and_judge_values_as_laravel_does(
    rules: str | list[str], fields: dict[str, object], taken: list[str], refused: list[str]
) -> None:
    translation = translate_rules(rules)
    assert translation.fields == fields
    assert translation.unknown == []
    variable = BlueprintVariable(env="X", name="x", **translation.fields).model_dump()
    for value in taken:
        assert value_problem(variable, value) is None, value
    for value in refused:
        assert value_problem(variable, value) is not None, value


def test_notes_say_what_was_changed_and_why() -> None:
    assert translate_rules("required|string|max:255").notes == ["max:255 on a string: length"]
    assert translate_rules("nullable|string|max:20").notes == [
        "max:20 on a string: length",
        "nullable: an empty value is allowed",
    ]
    assert "nullable with required: an empty value is still refused" in (
        translate_rules("required|nullable|string").notes
    )
    assert translate_rules("required|nullable|string").fields["required"] is True
    assert "min:1 on an integer: value" in translate_rules("integer|min:1").notes


def test_without_nullable_an_empty_value_is_refused_as_in_the_panel() -> None:
    """Laravel turns "" into null; "string" refuses null unless "nullable" is there."""
    translation = translate_rules("string|max:20")
    assert translation.fields["required"] is True
    assert any(
        note.startswith("no nullable: an empty value is refused") for note in translation.notes
    )
    # "max" alone lets null through (its size is 0), so the value stays optional.
    assert translate_rules("max:20").fields["required"] is False
    assert translate_rules("").fields == {"type": "string", "required": False}


def test_rules_we_cannot_enforce_are_listed_as_written() -> None:
    translation = translate_rules("required|string|exists:users,id|confirmed|different:OTHER")
    assert translation.unknown == ["exists:users,id", "confirmed", "different:OTHER"]
    assert translation.fields == {"type": "string", "required": True}


def test_a_pattern_bar_is_kept_in_a_string_and_the_difference_with_laravel_noted() -> None:
    rules = "required|regex:/^(true|false)$/|max:5"
    assert split_rules(rules) == ["required", "regex:/^(true|false)$/", "max:5"]
    assert laravel_split(rules) == ["required", "regex:/^(true", "false)$/", "max:5"]
    translation = translate_rules(rules)
    assert translation.fields["regex"] == "^(true|false)$"
    assert translation.notes[0].startswith("split at | outside the regex: pattern")
    # Laravel keeps a string that starts with regex: whole: no note then.
    assert laravel_split("regex:/a|b/") == ["regex:/a|b/"]
    assert not any("split" in n for n in translate_rules("regex:/^(a|b)$/").notes)
    # Other delimiters, flags, escaped delimiters and bracket delimiters.
    assert split_rules(r"regex:#a|b#i|nullable") == ["regex:#a|b#i", "nullable"]
    assert split_rules(r"regex:/a\/|b/|nullable") == [r"regex:/a\/|b/", "nullable"]
    assert split_rules("regex:{(a|b){2}}|nullable") == ["regex:{(a|b){2}}", "nullable"]
    # Not a delimited pattern: cut at every | (as Laravel would).
    assert split_rules("required|regex:abc|def") == ["required", "regex:abc", "def"]


@pytest.mark.parametrize(
    ("rule", "pattern", "taken", "refused"),
    [
        # preg_match finds an unanchored pattern anywhere in the value.
        ("regex:/[0-9]/", "(?s:.*?)(?:[0-9])(?s:.*)", ["a1b", "7"], ["abc"]),
        ("regex:/^a|b$/", "(?s:.*?)(?:^a|b$)(?s:.*)", ["ax", "xb"], ["xa", "bx"]),
        ("regex:/^[a-z]+$/i", "(?i)^[a-z]+$", ["Hello"], ["Hello1"]),
        ("regex:/^\\d+$/", "^\\d+$", ["42"], ["\u0664\u0662"]),
        ("regex:/^\\d+$/u", "(?u)^\\d+$", ["42", "\u0664\u0662"], ["4a"]),
        ("regex:/^a.b$/s", "(?s)^a.b$", ["a\nb"], ["ab"]),
        ("regex:/^b$/m", "(?m)(?s:.*?)(?:^b$)(?s:.*)", ["a\nb"], ["a\nc"]),
        (
            "regex:/^ a b # comment\n$/x",
            "(?x)(?s:.*?)(?:^ a b # comment\n$\n)(?s:.*)",
            ["ab"],
            ["a b"],
        ),
        ("regex:~^(?<word>[a-z]+)$~", "^(?<word>[a-z]+)$", ["abc"], ["ABC"]),
    ],
)
def test_php_patterns_become_python_patterns_that_agree_with_preg_match(
    rule: str, pattern: str, taken: list[str], refused: list[str]
) -> None:
    translation = translate_rules([rule])
    assert translation.unknown == []
    assert translation.fields["regex"] == pattern
    variable = BlueprintVariable(env="X", name="x", **translation.fields).model_dump()
    for value in taken:
        assert value_problem(variable, value) is None, value
    for value in refused:
        assert value_problem(variable, value) == "does not match the required pattern", value


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ("regex:abc", "a PHP pattern starts with a delimiter, as /…/"),
        ("regex:/abc", "the pattern has no closing /"),
        ("regex:/a+/U", "the PHP flag U has no Python equivalent here"),
        ("regex:/(?<n>a)\\k<n>/", "Python cannot compile the pattern: bad escape \\k"),
        ("regex:/(unclosed/", "Python cannot compile the pattern: missing )"),
    ],
)
def test_a_pattern_python_cannot_use_is_refused_with_a_reason(rule: str, reason: str) -> None:
    translation = translate_rules([rule])
    assert translation.unknown == [rule]
    assert "regex" not in translation.fields
    assert any(note.startswith(f"{rule}: {reason}") for note in translation.notes), (
        translation.notes
    )


def test_bounds_combine_and_round_as_lengths_and_whole_numbers() -> None:
    assert translate_rules("string|min:2|between:1,10|max:8").fields == {
        "type": "string",
        "min": 2,
        "max": 8,
        "required": True,
    }
    assert translate_rules("numeric|between:0.5,1.5").fields == {
        "type": "number",
        "min": 0.5,
        "max": 1.5,
        "required": True,
    }
    rounded = translate_rules("integer|between:0.5,9.5")
    assert rounded.fields == {"type": "integer", "min": 1, "max": 9, "required": True}
    assert "bounds rounded inward to whole numbers" in rounded.notes
    impossible = translate_rules("string|min:10|max:2")
    assert impossible.unknown == ["min:10", "max:2"]
    assert "min" not in impossible.fields
    bad = translate_rules("string|max:many")
    assert bad.unknown == ["max:many"]
    assert "max:many: max takes 1 number" in bad.notes


def test_in_takes_csv_values_and_boolean_narrows_them() -> None:
    assert translate_rules('in:"a,b",c, d').fields["options"] == ["a,b", "c", " d"]
    assert translate_rules("boolean|in:0,1,2").fields["options"] == ["0", "1"]
    assert translate_rules("integer|boolean").fields == {
        "type": "integer",
        "options": ["0", "1"],
        "required": True,
    }


def test_parameters_on_rules_that_take_none_are_not_ignored() -> None:
    assert translate_rules("integer:strict").unknown == ["integer:strict"]
    assert translate_rules("nullable|url:https,http").fields["format"] == "url"
    assert translate_rules("nullable|url:https").unknown == ["url:https"]
    assert translate_rules("nullable|url:http,ftp").unknown == ["url:http,ftp"]
    assert translate_rules("ip:v4").unknown == ["ip:v4"]
    assert "ip:v4: only ip without parameters is translated" in translate_rules("ip:v4").notes


# PHP patterns and the flags of Python's regex that search with them as preg_match does.
SEARCHED = [
    ("/[0-9]/", 0),
    ("/^a|b$/", 0),
    ("/^(a|b)+$/", 0),
    ("/a$/", 0),
    ("/^b/m", regex.MULTILINE),
    ("/^A.B$/is", regex.IGNORECASE | regex.DOTALL),
    ("/a b # the pair\n/x", regex.VERBOSE),
    ("/\\d\\s/", 0),
    ("/^a\\z/", 0),
    ("/(?<x>a)b/", 0),
]


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(0, len(SEARCHED) - 1),
    value=st.text(alphabet="ab AB1\n", min_size=1, max_size=8),
)
def test_a_translated_pattern_takes_exactly_the_values_preg_match_finds_it_in(
    index: int, value: str
) -> None:
    """The wrapping of an unanchored pattern, checked against a search (an empty value is
    never matched: it is accepted or refused as empty)."""
    php, flags = SEARCHED[index]
    translated = translate_rules([f"regex:{php}"]).fields["regex"]
    assert isinstance(translated, str)
    body = php[1 : php.rindex("/")]
    found = regex.search(body, value, flags | regex.ASCII) is not None
    problem = value_problem({"regex": translated}, value)
    kept_as_written = "(?s:.*?)" not in translated
    if kept_as_written and value.endswith("\n") and problem is not None:
        # Kept as written and matched whole: its $ does not take a final newline as
        # preg_match's does (deliberately stricter).
        return
    assert problem == (None if found else "does not match the required pattern")
