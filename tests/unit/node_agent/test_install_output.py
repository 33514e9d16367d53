"""The installer's kept lines and the reasons an install failed, in the agent's words."""

from __future__ import annotations

import pytest

from node_agent.servers.install_output import (
    MAX_INSTALL_LINE_CHARS,
    InstallOutput,
    clean_line,
    failure_reason,
    short_reason,
)


@pytest.mark.parametrize(
    ("printed", "kept"),
    [
        ("\x1b[1;32mDone\x1b[0m (3.2s)", "Done (3.2s)"),  # colours
        ("50%\x1b[K", "50%"),  # erase to the end of the line
        ("a\x00b\x07c\x7fd\x9be", "abcde"),  # NUL, bell, DEL, a C1 control
        ("tab\tstays", "tab\tstays"),
        ("é ✓ 中文", "é ✓ 中文"),
    ],
)
def test_a_line_is_kept_without_terminal_codes_or_control_characters(
    printed: str, kept: str
) -> None:
    assert clean_line(printed) == kept


def test_only_the_last_lines_are_kept_each_cut_at_the_cap() -> None:
    output = InstallOutput(max_lines=3)
    for n in range(10):
        output.add(f"line {n}")
    output.add("y" * (MAX_INSTALL_LINE_CHARS + 500))
    assert output.last_lines() == ["line 8", "line 9", "y" * MAX_INSTALL_LINE_CHARS]
    assert output.count == 11


@pytest.mark.parametrize(
    ("exit_code", "timed_out", "oom_killed", "reason"),
    [
        (0, False, False, None),
        (3, False, False, "the install script exited with code 3"),
        (
            137,
            False,
            True,
            "killed: out of memory (the server's memory limit applies to its installer)",
        ),
        (137, True, False, "timed out after 5 s: the installer was killed"),
        (0, True, False, "timed out after 5 s: the installer was killed"),
    ],
)
def test_why_an_install_failed(
    exit_code: int, timed_out: bool, oom_killed: bool, reason: str | None
) -> None:
    assert (
        failure_reason(
            exit_code=exit_code, timed_out=timed_out, timeout_seconds=5, oom_killed=oom_killed
        )
        == reason
    )


def test_a_long_reason_is_cut_to_what_the_control_plane_keeps() -> None:
    assert len(short_reason("x" * 1000)) == 255
    assert short_reason("short") == "short"
