"""The deny-list's gitignore semantics."""

from __future__ import annotations

import time

import pytest

from node_agent.files.denylist import DenyList
from node_agent.files.paths import parse_path


def denies(patterns: list[str], path: str, *, is_dir: bool = False) -> bool:
    return DenyList(patterns).denies(parse_path(path), is_dir=is_dir)


@pytest.mark.parametrize(
    ("patterns", "path", "is_dir", "expected"),
    [
        (["*.key"], "/tls.key", False, True),
        (["*.key"], "/deep/er/tls.key", False, True),
        (["*.key"], "/tls.keys", False, False),
        (["/config.yml"], "/config.yml", False, True),
        (["/config.yml"], "/sub/config.yml", False, False),
        (["secrets/"], "/secrets", True, True),
        (["secrets/"], "/secrets", False, False),
        (["secrets/"], "/a/secrets/x.txt", False, True),
        (["logs/**"], "/logs/a/b.log", False, True),
        (["logs/**"], "/logs", True, False),
        (["a/**/z"], "/a/z", False, True),
        (["a/**/z"], "/a/b/c/z", False, True),
        (["**/cache"], "/x/y/cache", True, True),
        (["*.key", "!public.key"], "/public.key", False, False),
        (["dir/", "!dir/keep"], "/dir/keep", False, True),  # as in git: no re-allow in a denied dir
        (["w?rld"], "/world", True, True),
        (["[abc].txt"], "/b.txt", False, True),
        (["[!abc].txt"], "/b.txt", False, False),
        (["# comment", "", "   "], "/anything", False, False),
        (["\\#hash"], "/#hash", False, True),
        (["*"], "/", True, False),
    ],
)
def test_pattern_matches_like_gitignore(
    patterns: list[str], path: str, is_dir: bool, expected: bool
) -> None:
    assert denies(patterns, path, is_dir=is_dir) is expected


def test_empty_deny_list_is_false_and_denies_nothing() -> None:
    assert not DenyList([])
    assert not DenyList(["# only a comment"])
    assert DenyList(["x"])


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        (["my world (1).zip"], "/my world (1).zip", True),
        (["a+b.txt"], "/aab.txt", False),
        (["config.$$$"], "/config.$$$", True),
        (["notes#1.txt"], "/notes#1.txt", True),
        (["kärte[nm].dat"], "/kärten.dat", True),
        (["back\\*slash"], "/back*slash", True),
        (["back\\*slash"], "/backXslash", False),
    ],
)
def test_characters_that_mean_something_to_an_expression_are_literal(
    patterns: list[str], path: str, expected: bool
) -> None:
    assert denies(patterns, path) is expected


def test_a_pattern_made_to_backtrack_is_matched_in_linear_time() -> None:
    # A deny-list comes from a blueprint (an egg from the internet), the path from any user:
    # a backtracking engine ran for hours on these (8 s already at a 60-character name).
    patterns = ["*a" * 100 + "b", "/" + "**/" * 20 + "x"]
    started = time.process_time()
    assert not denies(patterns, "/" + "/".join(["a" * 250] * 5))
    assert not denies(patterns, "/" + "/".join(["a"] * 300))
    assert time.process_time() - started < 1.0
