"""Simulated nodes for the fleet benchmark: the real agent app with only Docker simulated.

Run as ``python -m bench.fleet_nodes CONFIG.json``. The JSON names a directory, a control
port, the trusted signing key (``kid`` and public key text), the issuer and the nodes (id and
port). For each node this process serves the agent's own application (``node_agent.app.
create_app``: the command-token middleware and verifier with its persistent replay cache,
the server registry, power, state changes, the event bus and ``/api/v1/events`` WebSocket,
the resource sampler that puts ``stats`` events on it, the system facts), with
``bench.fleet_runtime.SimulatedRuntime`` in place of dockerd and without the pieces that
need a host (egress firewall, seccomp profile, SFTP listener, file and backup services).

On the control port (no token: it is the benchmark's own door, on loopback):

    GET  /healthz   200 once every node listens
    POST /servers   {"servers": [{"node": id, "spec": ServerSpec, "start": bool}]}: create
                    them on the nodes as the agent's create route would (registry.create),
                    and start those marked so; answers the count
    GET  /streams   per node: event-stream subscribers now, and the monotonic times (this
                    machine's CLOCK_MONOTONIC, shared by every process) of each open and close
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bench.fleet_runtime import SimulatedRuntime
from node_agent import app as agent_app
from node_agent.api.backups import backups_ctx
from node_agent.api.files import files_ctx
from node_agent.docker.network import AgentNetwork
from node_agent.docker.seccomp_context import game_seccomp_ctx
from node_agent.egress.keeper import egress_ctx
from node_agent.events import EventSubscription, NodeEventBus
from node_agent.keys import METRICS, NODE_EVENTS, SERVERS, SETTINGS, STATS, STORAGE
from node_agent.servers.records import RecordStore
from node_agent.servers.registry import ServerRegistry
from node_agent.servers.server import ServerServices
from node_agent.settings import AgentSettings
from node_agent.sftp.listener import sftp_listener_ctx, sftp_table_ctx
from node_agent.stats import ServerStatsReader
from shared.node_api import NodeEvent
from shared.node_endpoints import NODE_EVENT_STREAM
from shared.server_spec import ServerSpec

# What create_app installs that needs a host (dockerd, nftables, a seccomp base profile, an
# SFTP port, the file and backup services' workers): left out of a simulated node.
_HOST_ONLY = {
    agent_app.docker_ctx,
    egress_ctx,
    game_seccomp_ctx,
    sftp_table_ctx,
    sftp_listener_ctx,
    files_ctx,
    backups_ctx,
}


@dataclass
class StreamLog:
    """When this node's event-stream subscribers came and went (time.monotonic())."""

    open: int = 0
    opened: list[float] = field(default_factory=list)
    closed: list[float] = field(default_factory=list)
    # The event-stream sockets open now, as (client port, node port): the harness finds in
    # /proc which replica holds each. (The client port alone is not enough: two processes
    # may use one local port for connections to different addresses.)
    peers: list[tuple[int, int]] = field(default_factory=list)
    # Events published on the node's bus, by kind (state, stats, ...).
    published: dict[str, int] = field(default_factory=dict)
    # Reads of one server's state (``GET /api/v1/servers/{id}``): a follower reads every
    # server of its node when it connects. In all, and since the last stream opened.
    reads: int = 0
    reads_since_open: int = 0


class LoggedEventBus(NodeEventBus):
    """The agent's event bus, noting when a subscriber (an event-stream socket) comes and
    goes; the route subscribes once per socket."""

    def __init__(self, streams: StreamLog) -> None:
        super().__init__()
        self._streams = streams

    def subscribe(self, after: str | None = None) -> EventSubscription:
        self._streams.open += 1
        self._streams.opened.append(time.monotonic())
        self._streams.reads_since_open = 0
        return super().subscribe(after)

    def publish(self, event: NodeEvent) -> None:
        kind = str(getattr(event, "type", type(event).__name__))
        self._streams.published[kind] = self._streams.published.get(kind, 0) + 1
        super().publish(event)

    def unsubscribe(self, subscription: EventSubscription) -> None:
        self._streams.open -= 1
        self._streams.closed.append(time.monotonic())
        super().unsubscribe(subscription)


async def _no_network() -> AgentNetwork:
    return AgentNetwork(name="stellar-sim", id="sim", gateway=None)


def simulated_registry_ctx(
    streams: StreamLog,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """agent_app.server_registry_ctx with the simulated runtime and a logged event bus."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        events = LoggedEventBus(streams)
        metrics = app[METRICS]
        events.observers.append(metrics.observe_event)
        services = ServerServices(
            runtime=SimulatedRuntime(),
            records=RecordStore(settings.data_dir),
            events=events,
            network=_no_network,
            crash_loop_window=settings.crash_loop_window_seconds,
        )
        registry = ServerRegistry(
            services=services,
            volumes=app[STORAGE].volume,
            console_limits=settings.console,
            on_throttle=metrics.throttled,
        )
        await registry.load()
        await registry.restore()
        app[NODE_EVENTS] = events
        app[SERVERS] = registry
        app[STATS] = ServerStatsReader(registry)
        watched = metrics.watch_servers(registry)
        yield
        metrics.unwatch(watched)
        await app[STATS].close()
        await registry.close()

    return ctx


_SERVER_READ: Final = re.compile(r"/api/v1/servers/[0-9a-f-]{36}")


def peer_recorder(streams: StreamLog) -> Middleware:
    """Outermost middleware: notes the peer port of each event-stream request while it lasts."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport else None
        own = transport.get_extra_info("sockname") if transport else None
        if request.method == "GET" and _SERVER_READ.fullmatch(request.path):
            streams.reads += 1
            streams.reads_since_open += 1
        if request.path != NODE_EVENT_STREAM.path or not peer or not own:
            return await handler(request)
        connection = (int(peer[1]), int(own[1]))
        streams.peers.append(connection)
        try:
            return await handler(request)
        finally:
            streams.peers.remove(connection)

    return record


def simulated_node_app(settings: AgentSettings, streams: StreamLog) -> web.Application:
    """The agent's application for ``settings``, Docker simulated (see the module doc)."""
    app = agent_app.create_app(settings)
    app.middlewares.insert(0, peer_recorder(streams))
    contexts = [c for c in app.cleanup_ctx if c not in _HOST_ONLY]
    app.cleanup_ctx.clear()
    for context in contexts:
        if context is agent_app.server_registry_ctx:
            app.cleanup_ctx.append(simulated_registry_ctx(streams))
        else:
            app.cleanup_ctx.append(context)
    return app


@dataclass
class SimulatedNode:
    node_id: uuid.UUID
    port: int
    app: web.Application
    streams: StreamLog


def node_settings(config: dict[str, Any], node: dict[str, Any]) -> AgentSettings:
    root = Path(config["root"]) / str(node["id"])
    return AgentSettings(
        node_id=uuid.UUID(node["id"]),
        issuer=config["issuer"],
        listen_port=int(node["port"]),
        data_dir=root,
        trusted_keys={config["kid"]: config["public_key"]},
        storage_backend="directory",
        facts_refresh_seconds=3600,
        stats_sample_seconds=float(config.get("stats_seconds", 5.0)),
    )


def control_app(nodes: dict[uuid.UUID, SimulatedNode]) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"nodes": len(nodes)})

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        made = 0
        for item in body["servers"]:
            node = nodes[uuid.UUID(item["node"])]
            spec = ServerSpec.model_validate(item["spec"])
            await node.app[SERVERS].create(spec)
            if item.get("start"):
                # Started behind the control plane's back, as after an agent restart that
                # restored it: the replica that follows the node learns it from the stream.
                await node.app[SERVERS].get(spec.uuid).power("start")
            made += 1
        return web.json_response({"created": made})

    async def streams(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                str(node_id): {
                    "open": node.streams.open,
                    "opened": node.streams.opened,
                    "closed": node.streams.closed,
                    "peers": node.streams.peers,
                    "published": node.streams.published,
                    "reads": node.streams.reads,
                    "reads_since_open": node.streams.reads_since_open,
                    "dropped": node.app[NODE_EVENTS].dropped,
                }
                for node_id, node in nodes.items()
            }
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/servers", create)
    app.router.add_get("/streams", streams)
    return app


async def serve(config: dict[str, Any]) -> None:
    nodes: dict[uuid.UUID, SimulatedNode] = {}
    runners: list[web.AppRunner] = []
    try:
        for entry in config["nodes"]:
            settings = node_settings(config, entry)
            streams = StreamLog()
            app = simulated_node_app(settings, streams)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", settings.listen_port).start()
            nodes[settings.node_id] = SimulatedNode(
                settings.node_id, settings.listen_port, app, streams
            )
        control = web.AppRunner(control_app(nodes), access_log=None, handle_signals=False)
        await control.setup()
        runners.append(control)
        await web.TCPSite(control, "127.0.0.1", int(config["control_port"])).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def main(argv: list[str]) -> int:
    # The agents' info lines (a state change per power action, per node) would cost more
    # than the work they describe: warnings and errors only.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
    )
    config = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
