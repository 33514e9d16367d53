"""Reading egg files: strict JSON, YAML without anchors or aliases, caps."""

from __future__ import annotations

import json

import pytest

from control_plane.errors import InvalidRequest, PayloadTooLarge
from control_plane.services.eggs.reading import (
    MAX_EGG_FILE_BYTES,
    MAX_EGGS_PER_IMPORT,
    format_of,
    read_eggs,
)

BILLION_LAUGHS = b"""\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_a_yaml_bomb_is_refused_before_it_grows() -> None:
    with pytest.raises(InvalidRequest, match="anchors and aliases are not accepted"):
        read_eggs(BILLION_LAUGHS, "yaml")


def test_a_single_anchor_is_refused_too() -> None:
    with pytest.raises(InvalidRequest, match="anchors and aliases"):
        read_eggs(b"name: &n Paper\nmeta: {version: PLCN_v3}\n", "yaml")


def test_yaml_tags_that_build_python_objects_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="not valid YAML"):
        read_eggs(b"name: !!python/object/apply:os.system ['true']\n", "yaml")


def test_yaml_keeps_yes_no_and_dates_as_text_as_pelican_reads_them() -> None:
    (egg,) = read_eggs(b"a: yes\nb: off\nc: true\nd: 2024-05-10\ne: 25565\n", "yaml")
    assert egg == {"a": "yes", "b": "off", "c": True, "d": "2024-05-10", "e": 25565}


def test_a_number_of_more_digits_than_python_converts_is_refused_not_a_500() -> None:
    digits = b"1" * 5000
    with pytest.raises(InvalidRequest, match="the egg is not valid YAML"):
        read_eggs(b"n: " + digits + b"\n", "yaml")
    with pytest.raises(InvalidRequest, match="the egg is not strict JSON"):
        read_eggs(b'{"n": ' + digits + b"}", "json")


def test_json_with_a_duplicate_member_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="duplicate member"):
        read_eggs(b'{"name": "a", "name": "b"}', "json")


def test_json_nan_and_a_byte_order_mark_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="not strict JSON"):
        read_eggs(b'{"a": NaN}', "json")
    with pytest.raises(InvalidRequest, match="byte order mark"):
        read_eggs(b"\xef\xbb\xbf{}", "json")


def test_text_with_nul_is_refused_in_either_format() -> None:
    with pytest.raises(InvalidRequest, match="NUL"):
        read_eggs(b'{"name": "a\\u0000"}', "json")
    with pytest.raises(InvalidRequest):
        read_eggs(b'name: "a\\0"\n', "yaml")


def test_an_oversized_file_is_refused_before_parsing() -> None:
    raw = b'{"a": "' + b"x" * MAX_EGG_FILE_BYTES + b'"}'
    with pytest.raises(PayloadTooLarge):
        read_eggs(raw, "json")


def test_a_list_of_eggs_is_read_and_capped() -> None:
    assert len(read_eggs(json.dumps([{"a": 1}, {"b": 2}]).encode(), "json")) == 2
    many = json.dumps([{}] * (MAX_EGGS_PER_IMPORT + 1)).encode()
    with pytest.raises(PayloadTooLarge, match=f"at most {MAX_EGGS_PER_IMPORT}"):
        read_eggs(many, "json")
    with pytest.raises(InvalidRequest, match="egg 1 is not an object"):
        read_eggs(b'[{}, "x"]', "json")


def test_deep_yaml_nesting_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="nested deeper"):
        read_eggs(b"a: " + b"[" * 100 + b"]" * 100, "yaml")


def test_format_follows_media_type_or_file_name() -> None:
    assert format_of("application/yaml") == "yaml"
    assert format_of("text/yaml") == "yaml"
    assert format_of("", "egg-paper.yml") == "yaml"
    assert format_of("application/json", "egg.json") == "json"
    assert format_of("application/octet-stream", "egg") == "json"
