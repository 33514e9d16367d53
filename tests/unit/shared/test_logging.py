"""No password, token or secret reaches a log line, whatever a caller passes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.logging import _SENSITIVE_TEXT, REDACTED, _scrub, configure_logging

JWT = "eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJzdGVsbGFyLWNwIn0.c2lnbmF0dXJlLWJ5dGVz"


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    configure_logging(level="debug", json=True)
    yield capsys
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def test_sensitive_keys_are_blanked(json_logs: pytest.CaptureFixture[str]) -> None:
    structlog.get_logger("t").info(
        "login",
        password="hunter2-hunter2",
        new_password="p4ss-w0rd-long",
        auth_secret="s3cr3t-value",
        api_key="stl_abcdefgh12345678",
        headers={
            "Authorization": "Bearer abc.def",
            "Cookie": "__Host-session=xyz",
            "Accept": "*/*",
        },
        csrf_token="csrf-value-123",
        email="admin@example.org",
    )
    [line] = lines(json_logs)
    text = json.dumps(line)
    for secret in (
        "hunter2",
        "p4ss-w0rd",
        "s3cr3t",
        "stl_abcdefgh",
        "abc.def",
        "xyz",
        "csrf-value",
    ):
        assert secret not in text
    assert line["password"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED, "Cookie": REDACTED, "Accept": "*/*"}
    assert line["email"] == "admin@example.org"


def test_token_shaped_text_is_scrubbed_from_messages(json_logs: pytest.CaptureFixture[str]) -> None:
    log = structlog.get_logger("t")
    log.warning(f"rejected {JWT}", detail=f"header was Bearer {JWT}", items=[JWT])
    logging.getLogger("aiohttp.server").error("bad request with %s", JWT)
    output = json_logs.readouterr().out
    assert JWT not in output
    assert "eyJhbGciOiJFZERTQSJ9" not in output
    assert output.count(REDACTED) >= 4


def test_exception_text_is_scrubbed(json_logs: pytest.CaptureFixture[str]) -> None:
    try:
        raise ValueError(f"could not parse {JWT}")
    except ValueError:
        structlog.get_logger("t").exception("failed")
    output = json_logs.readouterr().out
    assert JWT not in output
    assert "could not parse" in output


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["eyJ", "EYJ", "bearer ", "BeArEr\t", "stl_", "STL_", "x", ".", "_", "-"])
        | st.text(alphabet="abcdefghijXYZ0123456789._-/ =+~", max_size=12),
        max_size=12,
    ).map("".join)
)
def test_quick_scrub_finds_every_token_the_full_pattern_finds(text: str) -> None:
    # _scrub skips the regex unless a cheap substring test says a match is possible.
    assert _scrub(text) == _SENSITIVE_TEXT.sub(REDACTED, text)
