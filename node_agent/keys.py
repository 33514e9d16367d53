"""Every piece of state the agent keeps on its Application, under typed keys."""

from __future__ import annotations

import aiodocker
from aiohttp import web

from node_agent.backups.service import BackupService
from node_agent.console.session import OpenSockets
from node_agent.docker.seccomp import GameSeccomp
from node_agent.events import NodeEventBus
from node_agent.files.service import FileService
from node_agent.metrics import AgentMetrics
from node_agent.security.replay import PersistentReplayCache
from node_agent.servers.registry import ServerRegistry
from node_agent.settings import AgentSettings
from node_agent.sftp.access import AccessTable
from node_agent.sftp.session import SftpServices
from node_agent.stats import ServerStatsReader
from node_agent.storage.backend import NodeStorage
from shared.node_api import NodeFacts
from shared.protocol import CommandClaims, CommandVerifier
from shared.sftp_api import SftpInfo

SETTINGS = web.AppKey("settings", AgentSettings)
REPLAY_CACHE = web.AppKey("replay_cache", PersistentReplayCache)
VERIFIER = web.AppKey("verifier", CommandVerifier)
DOCKER = web.AppKey("docker", aiodocker.Docker)
FACTS = web.AppKey("facts", NodeFacts)
# GET /api/v1/system's body, rendered whenever the facts are read (not per request).
SYSTEM_JSON = web.AppKey("system_json", str)
SERVERS = web.AppKey("servers", ServerRegistry)
NODE_EVENTS = web.AppKey("node_events", NodeEventBus)
STATS = web.AppKey("stats", ServerStatsReader)
OPEN_SOCKETS = web.AppKey("open_sockets", OpenSockets)
STORAGE = web.AppKey("storage", NodeStorage)
GAME_SECCOMP = web.AppKey("game_seccomp", GameSeccomp)
FILES = web.AppKey("files", FileService)
BACKUPS = web.AppKey("backups", BackupService)
SFTP_ACCESS = web.AppKey("sftp_access", AccessTable)
# Only when SFTP is on (sftp_port set): the listener's port and host key, and its sessions.
SFTP_INFO = web.AppKey("sftp_info", SftpInfo)
SFTP_SERVICES = web.AppKey("sftp_services", SftpServices)

# Per request: the verified claims of the command that authorised it.
CLAIMS = web.RequestKey("claims", CommandClaims)
# This process's Prometheus metrics (their own registry: no module globals).
METRICS = web.AppKey("metrics", AgentMetrics)
