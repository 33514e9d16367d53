"""Every piece of state the control plane keeps on its Application, under typed keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp
import jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from control_plane.api.list_cache import ListCache
from control_plane.db.leases import LeaseKeeper
from control_plane.db.reader import StatementReader
from control_plane.mail.sender import MailSender
from control_plane.nodes.client import NodeClient
from control_plane.nodes.console import ConsoleSessions
from control_plane.observability.metrics import ControlPlaneMetrics
from control_plane.security.caller import Caller
from control_plane.security.encryption import SecretBox
from control_plane.security.rate_limit import Decision, RateLimiter
from control_plane.services.webhooks.guard import WebhookUrlGuard
from control_plane.settings import ControlPlaneSettings
from control_plane.web.assets import AssetIndex

if TYPE_CHECKING:
    from control_plane.nodes.events import NodeEventListener
    from control_plane.scheduling.runner import Scheduler
    from control_plane.services.state_fanout import StateFanout

SETTINGS = web.AppKey("settings", ControlPlaneSettings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
READ_SESSIONS = web.AppKey("read_sessions", async_sessionmaker[AsyncSession])
# Reads that are one statement each (authentication, lists): no transaction round trips.
STATEMENT_READER = web.AppKey("statement_reader", StatementReader)
# Server lists answered again at the lists' version they were read at (api/list_cache.py).
LIST_CACHE = web.AppKey("list_cache", ListCache)
# (method, route template) of the routes that answer kept lists: their authentication read
# brings the lists' versions, the others' does not (``Endpoint.kept_lists``).
LISTING_ROUTES: web.AppKey[frozenset[tuple[str, str]]] = web.AppKey("listing_routes")
HTTP = web.AppKey("http", aiohttp.ClientSession)
NODES = web.AppKey("nodes", NodeClient)

# Per request: who is calling (None when unauthenticated), and their IP.
CALLER = web.RequestKey("caller", Caller)
CLIENT_IP = web.RequestKey("client_ip", str)
CONSOLES = web.AppKey("consoles", ConsoleSessions)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
SECRET_BOX = web.AppKey("secret_box", SecretBox)
RATE_DECISION = web.RequestKey("rate_decision", Decision)
# Seconds since the epoch, for TOTP time steps (tests move it by hand).
WALL_CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("wall_clock")
# The web panel: its static files and its templates.
WEB_ASSETS = web.AppKey("web_assets", AssetIndex)
WEB_TEMPLATES = web.AppKey("web_templates", jinja2.Environment)
# A page's nonce for the <style> elements its vendored code creates (the console's xterm.js).
STYLE_NONCE = web.RequestKey("style_nonce", str)
# This process's Prometheus metrics (their own registry: no module globals).
METRICS = web.AppKey("metrics", ControlPlaneMetrics)
# The outbox's sender: ``wake()`` after a request queued mail (present when mail is set up).
MAIL = web.AppKey("mail", MailSender)
# How webhook URLs are checked (the resolver; loopback for tests only).
WEBHOOK_GUARD = web.AppKey("webhook_guard", WebhookUrlGuard)
# The schedule runner of this replica (control_plane/scheduling/runner.py).
SCHEDULER: web.AppKey[Scheduler] = web.AppKey("scheduler")
# Server state changes to this replica's consoles, from whichever replica recorded them.
STATE_FANOUT: web.AppKey[StateFanout] = web.AppKey("state_fanout")
# This replica's leases (one node event stream, one leader job at a time across replicas).
LEASES = web.AppKey("leases", LeaseKeeper)
# This replica's followers of the nodes' event streams (with the background jobs).
NODE_EVENTS: web.AppKey[NodeEventListener] = web.AppKey("node_events")
