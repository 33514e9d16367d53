"""Many writers on one SQLite file at once — the node-health poll, node event streams and API
requests, as in the fleet benchmark where the poll logged ``database is locked`` — all get
their turn: no write fails, nothing logs ``database is locked``.

Left to SQLite's busy handler the lock goes to whichever waiter retries first, and under this
load some writer lost for its whole 5 s (``control_plane/db/engine.py``: writers now queue in
arrival order).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytest_aiohttp import AiohttpClient, AiohttpServer
from structlog.testing import capture_logs

from control_plane.db.models import Node
from control_plane.db.session import transaction
from control_plane.keys import SESSIONS
from control_plane.nodes.health import NodeHealthMonitor
from shared.command_keys import write_private_key
from tests.integration.control_plane.test_service_faults import make_panel, migrated
from tests.support.agent_process import free_port

NODES = 12
ROUNDS = 10
# How long an event stream's write keeps its transaction: a batch of states and samples, and
# the domain events they publish, on a loaded machine (the two-core CI runner).
STREAM_WRITE_SECONDS = 0.02


async def test_health_poll_event_streams_and_requests_write_sqlite_together(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'stellar.db'}"
    await migrated(url)
    key_file = tmp_path / "signing.key"
    write_private_key(key_file, Ed25519PrivateKey.generate())
    panel = await make_panel(
        aiohttp_server,
        aiohttp_client,
        STELLAR_DATABASE_URL=url,
        STELLAR_NODE_HEALTH_INTERVAL_SECONDS="1",
        STELLAR_SIGNING_KEY_FILE=str(key_file),
    )
    app = panel.server.app
    admin = await panel.signed_in("admin@example.org", admin=True)
    location = await admin.json("POST", "/api/v1/locations", status=201, json={"code": "lab"})
    node_ids: list[uuid.UUID] = []
    for n in range(NODES):
        # Nobody listens there: each poll is a quick refusal and a write (the node offline).
        node = await admin.json(
            "POST",
            "/api/v1/nodes",
            status=201,
            json={
                "name": f"node-{n}",
                "url": f"http://127.0.0.1:{free_port()}",
                "location_id": location["id"],
            },
        )
        node_ids.append(uuid.UUID(node["id"]))

    async def health_poll() -> None:
        for _ in range(ROUNDS):
            # A fresh monitor has no backoff: every node is polled, and written, each pass.
            await NodeHealthMonitor(app).poll_once()

    async def event_stream(node_id: uuid.UUID) -> None:
        for _ in range(ROUNDS):
            async with transaction(app[SESSIONS]) as db:
                node = await db.get(Node, node_id)
                assert node is not None
                node.last_seen_at = dt.datetime.now(dt.UTC)
                await asyncio.sleep(STREAM_WRITE_SECONDS)

    async def requests(worker: int) -> list[int]:
        statuses = []
        for n in range(ROUNDS):
            response = await admin.request(
                "POST", "/api/v1/locations", json={"code": f"w{worker}-{n}"}
            )
            statuses.append(response.status)
        return statuses

    with capture_logs() as logs:
        outcomes = await asyncio.gather(
            health_poll(),
            *(event_stream(node_id) for node_id in node_ids),
            *(requests(worker) for worker in range(8)),
            return_exceptions=True,
        )
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert failures == []
    statuses = [status for outcome in outcomes if isinstance(outcome, list) for status in outcome]
    assert statuses == [201] * 8 * ROUNDS
    locked = [event for event in logs if "locked" in str(event)]
    assert locked == []
    # Every write landed: each node was polled (offline), each location is there.
    listed = await admin.json("GET", "/api/v1/nodes")
    assert {node["status"] for node in listed["data"]} == {"offline"}
    locations = await admin.json("GET", "/api/v1/locations?per_page=500")
    assert len(locations["data"]) == 1 + 8 * ROUNDS
