"""The JSON the API parses: what is refused, what still passes, and that checking a body of
the largest size costs a loop, not a recursion."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from control_plane.api.strict_input import (
    MAX_DEPTH,
    MAX_EXACT_NUMBER,
    check_input,
    parse_json_body,
    unstorable,
)
from control_plane.errors import InvalidRequest


def refusal(raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_json_body(raw)
    return caught.value


@pytest.mark.parametrize(
    "raw",
    [
        b"NaN",
        b"[Infinity]",
        b"[-Infinity]",
        b"[1e309]",
        b"[" + b"7" * 5000 + b"]",
        b'["\\ud800"]',
        b'["\\udc00"]',
        b'["\xed\xa0\x80"]',
        b'["\xff"]',
        b'["a\x00"]',
        b"\xef\xbb\xbf{}",
        b"{} {}",
        b"",
        b'{"a": 1,}',
    ],
)
def test_what_orjson_refuses_is_a_400(raw: bytes) -> None:
    assert refusal(raw).message.startswith("the request body is not valid JSON")


def test_duplicate_names_keep_the_last_value_as_json_does() -> None:
    assert parse_json_body(b'{"a": 1, "a": 2}') == {"a": 2}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1024, 1025, 500_000])
@pytest.mark.parametrize(("opening", "closing"), [(b"[", b"]"), (b'{"a":', b"}")])
def test_nesting_past_the_limit_is_refused(depth: int, opening: bytes, closing: bytes) -> None:
    error = refusal(opening * depth + b"1" * (opening == b'{"a":') + closing * depth)
    assert error.message == f"the request body is nested deeper than {MAX_DEPTH} levels"


def test_nesting_up_to_the_limit_is_parsed() -> None:
    assert parse_json_body(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    deep_field = b'{"a": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert parse_json_body(deep_field) is not None
    with pytest.raises(InvalidRequest):
        parse_json_body(b'{"a": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}")


@pytest.mark.parametrize(
    "number",
    [
        MAX_EXACT_NUMBER + 1,
        -MAX_EXACT_NUMBER - 1,
        2**63,
        2**64,  # orjson reads this one as a float
        -(2**64),
        "1e16",
        "-2.5e300",
    ],
)
def test_numbers_a_double_cannot_hold_exactly_are_refused(number: int | str) -> None:
    error = refusal(b'{"limit": {"n": [' + str(number).encode() + b"]}}")
    assert [detail.loc for detail in error.details] == [["limit"]]


@pytest.mark.parametrize("number", [MAX_EXACT_NUMBER, -MAX_EXACT_NUMBER, 0, 1.5, -1e15, 1e-300])
def test_numbers_within_range_pass(number: float) -> None:
    assert parse_json_body(orjson.dumps({"n": number})) == {"n": number}


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        (b'{"email": "a\\u0000b"}', ["email"]),
        (b'{"tags": ["ok", "\\u0000"]}', ["tags"]),
        (b'{"v": {"x\\u0000": 1}}', ["v"]),
        (b'{"x\\u0000": 1}', []),
        (b'"\\u0000"', []),
    ],
)
def test_nul_is_refused_in_strings_and_keys(raw: bytes, loc: list[str]) -> None:
    error = refusal(raw)
    assert [detail.loc for detail in error.details] == [loc]
    assert "NUL" in error.details[0].msg


@pytest.mark.parametrize(
    "data",
    [
        {"a": "\ud800"},
        {"a": ["x\udfff"]},
        {"\udc80": 1},
        {"a": {"b": [{"c": "\x00"}]}},
        {"a": float("nan")},
        {"a": [float("inf")]},
    ],
)
def test_parsed_input_from_elsewhere_gets_the_same_checks(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        check_input(data, "query")


def test_text_that_every_database_stores_passes() -> None:
    for text in ("", "plain", "é", "😀", "\u0001\t\n", "\ufffd", "\uffff", "\\u0000"):
        assert not unstorable(text)
        assert parse_json_body(orjson.dumps({text: [text]})) == {text: [text]}
    for text in ("\x00", "a\x00", "\ud800", "\udfff", "x\udc80y"):
        assert unstorable(text)


def test_a_megabyte_of_values_is_checked_without_recursion() -> None:
    wide = b'{"a": [' + b",".join([b"[]"] * 300_000) + b"]}"
    assert len(parse_json_body(wide)["a"]) == 300_000
    flat = orjson.dumps({"a": list(range(400_000))})
    assert len(parse_json_body(flat)["a"]) == 400_000
