"""The node API table is the agent's routes, both sides of it, and its description."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from openapi_spec_validator import validate

from node_agent.app import create_app
from node_agent.security.verify import endpoint_of
from node_agent.settings import AgentSettings
from shared.command_keys import public_key_text
from shared.node_endpoints import (
    FILES_UPLOAD,
    NODE_API,
    SERVER_POWER,
    NoBody,
    NodeEndpoint,
    openapi_document,
)
from shared.server_spec import PowerAction, ServerStatus


def agent_routes(tmp_path: Path) -> dict[tuple[str, str], object]:
    settings = AgentSettings.model_validate(
        {
            "node_id": uuid.uuid4(),
            "data_dir": tmp_path,
            "trusted_keys": {"cp-key": public_key_text(Ed25519PrivateKey.generate().public_key())},
        }
    )
    app = create_app(settings)  # no I/O until it starts
    routes: dict[tuple[str, str], object] = {}
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp's automatic twin of each GET
        routes[(route.method, route.resource.canonical if route.resource else "")] = route.handler
    return routes


def test_every_agent_route_has_a_row_and_every_row_a_route(tmp_path: Path) -> None:
    routes = agent_routes(tmp_path)
    rows = {(e.method, e.path): e for e in NODE_API}
    assert len(rows) == len(NODE_API), "two rows for one method and path"
    unserved = set(rows) - set(routes)
    assert not unserved, f"rows without a route: {sorted(unserved)}"
    outside = set(routes) - set(rows) - {("GET", "/healthz")}
    assert not outside, f"routes without a row: {sorted(outside)}"
    for key, handler in routes.items():
        if key == ("GET", "/healthz"):
            assert endpoint_of(handler) is None  # the only route that takes no command
            continue
        # The verifier checks a token's act and sub against exactly this row.
        assert endpoint_of(handler) is rows[key], key


def test_every_row_is_consistent() -> None:
    actions = [e.action for e in NODE_API]
    assert len(set(actions)) == len(actions), "an action names two endpoints"
    for endpoint in NODE_API:
        assert endpoint.subject == ("server" if "{server_id}" in endpoint.path else "node")
        assert set(endpoint.parameters) <= {"server_id", "backup_id"}
        if endpoint.answer == "none":
            assert endpoint.status == 204, endpoint.action
        if endpoint.body == "stream":
            assert endpoint.query is not None, "a streamed body is bounded by a signed size"


def test_a_row_fills_its_path_and_names_its_subject() -> None:
    server = uuid.uuid4()
    assert SERVER_POWER.url_path(server_id=server) == f"/api/v1/servers/{server}/power"
    assert SERVER_POWER.subject_of(server) == f"server:{server}"
    with pytest.raises(ValueError, match="takes"):
        SERVER_POWER.url_path()
    with pytest.raises(ValueError, match="takes"):
        SERVER_POWER.url_path(server_id=server, backup_id=server)
    assert FILES_UPLOAD.body == "stream"
    endpoint: NodeEndpoint[PowerAction, ServerStatus] = SERVER_POWER
    assert (endpoint.request, endpoint.response) == (PowerAction, ServerStatus)


def test_a_row_that_contradicts_itself_is_refused() -> None:
    with pytest.raises(ValueError, match="JSON body"):
        NodeEndpoint("POST", "/api/v1/x", "x", "node", NoBody, NoBody, "x", body="json")
    with pytest.raises(ValueError, match="lies under"):
        NodeEndpoint(
            "GET", "/api/v1/x", "x", "server", NoBody, NoBody, "x", body="none", answer="none"
        )


def test_the_node_api_description_is_made_from_the_table() -> None:
    document = openapi_document()
    validate(document)
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert set(operations) == {(e.method, e.path) for e in NODE_API}
    for endpoint in NODE_API:
        operation = operations[(endpoint.method, endpoint.path)]
        assert operation["x-command-act"] == endpoint.action
        assert str(endpoint.status) in operation["responses"]


def test_stellar_agent_prints_the_node_api_description() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "node_agent", "api-doc"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(printed.stdout) == json.loads(json.dumps(openapi_document()))


def test_the_control_planes_client_has_a_typed_method_for_every_row() -> None:
    import shared.node_endpoints as table
    from control_plane.nodes.client import NodeClient

    names = {name for name, value in vars(table).items() if value in NODE_API}
    assert len(names) == len(NODE_API)
    source = inspect.getsource(NodeClient)
    missing = sorted(name for name in names if not re.search(rf"\(\s*{name},", source))
    assert not missing, f"rows without a NodeClient method: {missing}"
