"""Serve apps in tests as ``stellar-cp serve`` and ``stellar-agent serve`` do."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner

from shared.http_server import ApiAppRunner


class ApiTestServer(TestServer):
    """``TestServer`` on :class:`ApiAppRunner`: aiohttp's own refusals as in production."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return ApiAppRunner(self.app, **kwargs)
