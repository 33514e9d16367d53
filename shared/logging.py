"""structlog set-up shared by both services: configured once, at start-up.

JSON lines when stdout is not a terminal (systemd/journald), a readable console otherwise.
A redaction processor runs last before rendering, so no password, token or secret reaches a
log line even when a caller passes one by mistake.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import orjson
import structlog

REDACTED = "[redacted]"
_SENSITIVE_KEY = re.compile(
    r"pass(word)?|secret|token|authorization|cookie|api[_-]?key|private|credential|otp|csrf",
    re.IGNORECASE,
)
# JWTs, bearer credentials and our own opaque tokens, wherever they appear in a string.
_SENSITIVE_TEXT = re.compile(
    r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|\bstl_[A-Za-z0-9_-]{8,}"
)


# What every log line of the current request (or task) carries: the request id, the agent's
# command id. One variable holding an immutable mapping, read once per line: structlog's own
# context functions walk every context variable of the task (asyncio's, aiohttp's, the
# database session's) at each line and each clear.
_LOG_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar(
    "stellar_log_context", default=MappingProxyType({})
)


def start_log_context(**values: Any) -> None:
    """Begin the current task's log context afresh with ``values`` (a request's start)."""
    _LOG_CONTEXT.set(values)


def bind_log_context(**values: Any) -> None:
    """Add ``values`` to every later log line of the current task (and tasks it starts)."""
    _LOG_CONTEXT.set({**_LOG_CONTEXT.get(), **values})


def merge_log_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the log context's values, under the line's own keys."""
    for key, value in _LOG_CONTEXT.get().items():
        event_dict.setdefault(key, value)
    return event_dict


@lru_cache(maxsize=1024)
def _sensitive_key(key: str) -> bool:
    return _SENSITIVE_KEY.search(key) is not None


def _scrub(text: str) -> str:
    # Every match of _SENSITIVE_TEXT contains one of these, in some letter case; the cheap
    # test spares the regex on almost every value (a log line is written per request).
    folded = text.lower()
    if "eyj" in folded or "bearer" in folded or "stl_" in folded:
        return _SENSITIVE_TEXT.sub(REDACTED, text)
    return text


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with sensitive keys blanked and token-shaped text scrubbed."""
    if depth > 6:
        return value
    if isinstance(value, str):
        return _scrub(value)
    if isinstance(value, int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and _sensitive_key(k) else redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, depth + 1) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: blank sensitive keys, scrub token-shaped text from values."""
    for key, value in event_dict.items():
        if _sensitive_key(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = _scrub(value)
        elif not isinstance(value, int | float) and value is not None:
            event_dict[key] = redact(value)
    return event_dict


# The second's text, made once a second: a line per request made structlog's TimeStamper
# (a datetime, its isoformat, a replace) a tenth of the request's log line.
_second: tuple[int, str] = (0, "")


def add_timestamp(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: ``timestamp`` in UTC to the microsecond (``…T21:50:35.123456Z``)."""
    global _second
    now = time.time()
    second = int(now)
    if _second[0] != second:
        _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    event_dict["timestamp"] = f"{_second[1]}.{int((now - second) * 1_000_000):06d}Z"
    return event_dict


def _unknown_to_text(value: Any) -> str:
    return repr(value)


def render_json(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
    """structlog renderer: one JSON line (orjson: ~10x the stdlib encoder's speed)."""
    return orjson.dumps(
        event_dict, default=_unknown_to_text, option=orjson.OPT_NON_STR_KEYS
    ).decode("utf-8")


# Whether configure_logging set up JSON lines with info enabled (the request line's own path).
_request_lines_direct = False
_http_log = structlog.get_logger("http")


def log_request(
    method: str, path: str, status: int, duration_ms: float, remote: str | None
) -> None:
    """The one line each request logs (``event: request``). Written here directly when lines
    are JSON — the same keys, context, redaction and rendering as structlog's chain — since
    the chain's generic steps (a bound logger, a copied context, seven processors, a
    locked print) were an eighth of a listed page's CPU (bench/api.py, py-spy); otherwise
    (a terminal, a test capturing lines, info not logged) through structlog as any line."""
    if not _request_lines_direct or structlog.get_config()["processors"][-1] is not render_json:
        _http_log.info(
            "request",
            method=method,
            path=path,
            status=status,
            duration_ms=duration_ms,
            remote=remote,
        )
        return
    line: dict[str, Any] = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": duration_ms,
        "remote": remote,
        "event": "request",
    }
    merge_log_context(None, "info", line)
    line["level"] = "info"
    add_timestamp(None, "info", line)
    redact_secrets(None, "info", line)
    sys.stdout.write(render_json(None, "info", line) + "\n")
    sys.stdout.flush()


class _StdoutHandler(logging.Handler):
    """Writes each record to whatever ``sys.stdout`` is at that moment."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:
            self.handleError(record)


def configure_logging(*, level: str = "info", json: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger once for the whole process."""
    as_json = not sys.stdout.isatty() if json is None else json
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        merge_log_context,
        structlog.processors.add_log_level,
        add_timestamp,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    renderer: structlog.types.Processor = (
        render_json if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    # Libraries that log through the stdlib (aiohttp, alembic, sqlalchemy) go the same way.
    handler = _StdoutHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    global _request_lines_direct
    _request_lines_direct = as_json and numeric_level <= logging.INFO
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    # aiohttp's own access log is replaced by our one summary line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
