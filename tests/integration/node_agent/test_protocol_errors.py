"""A real ``stellar-agent serve``: the HTTP parser's refusals are in the error shape and echo
nothing; no answer names the server software; SIGTERM still stops it cleanly."""

from __future__ import annotations

import pytest

from tests.integration.control_plane.test_protocol_errors import ATTACKS, MARKER
from tests.support.agent_process import AgentProcess
from tests.support.raw_http import exchange, request_bytes

pytestmark = pytest.mark.slow


async def test_the_agent_answers_the_parsers_refusals_in_the_error_shape(
    agent: AgentProcess,
) -> None:
    for attack in ATTACKS:
        response = await exchange("127.0.0.1", agent.port, attack())
        assert response.status == 400, f"{attack.__name__}: {response.raw[:300]!r}"
        assert response.headers["Content-Type"].startswith("application/json")
        assert set(response.json()["error"]) == {"code", "message", "details"}
        assert MARKER.encode() not in response.raw
        assert "Server" not in response.headers
    for path in ("/healthz", "/api/v1/system", "/no/such/route"):
        response = await exchange(
            "127.0.0.1", agent.port, request_bytes("GET", path, {"Connection": "close"})
        )
        assert response.status in {200, 401, 404}
        assert "Server" not in response.headers
