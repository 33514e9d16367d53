"""No password, token or secret reaches a log line, whatever a caller passes."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

import shared.logging
from shared.logging import (
    _SENSITIVE_TEXT,
    REDACTED,
    _scrub,
    configure_logging,
    log_request,
    start_log_context,
)

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


def test_the_request_line_written_directly_is_the_line_structlog_writes(
    json_logs: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    start_log_context(request_id="req-1", session_token="t0ken-in-context")
    log_request("GET", f"/api/v1/servers/{JWT}", 200, 1.25, "127.0.0.1")
    [direct] = lines(json_logs)
    monkeypatch.setattr(shared.logging, "_request_lines_direct", False)
    # A logger of its own: the module's would stay bound to this test's configuration.
    monkeypatch.setattr(shared.logging, "_http_log", structlog.get_logger("http"))
    log_request("GET", f"/api/v1/servers/{JWT}", 200, 1.25, "127.0.0.1")
    [chained] = lines(json_logs)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", str(direct.pop("timestamp")))
    chained.pop("timestamp")
    assert list(direct.items()) == list(chained.items())
    assert direct["event"] == "request"
    assert direct["request_id"] == "req-1"
    assert direct["path"] == f"/api/v1/servers/{REDACTED}"
    assert direct["session_token"] == REDACTED


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
