"""The database and the node client of a ``stellar-cp`` command that acts on a game server.

Such a command works as the control plane's routes do, with the same signing key (so it needs
the control plane's environment: ``STELLAR_DATABASE_URL`` and ``STELLAR_SIGNING_KEY_FILE``):
read in a transaction, call the node outside any transaction, then write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control_plane.db.engine import create_engine, session_factory
from control_plane.nodes.client import NodeClient, NodeNotConfigured
from control_plane.nodes.transport import node_session
from control_plane.security.command_signing import CommandSigner
from control_plane.settings import ControlPlaneSettings

# The acting user in the agent's log for what an operator does on the command line.
CLI_USER = "cli"


@dataclass(frozen=True)
class CliContext:
    sessions: async_sessionmaker[AsyncSession]
    nodes: NodeClient


@asynccontextmanager
async def cli_context(settings: ControlPlaneSettings) -> AsyncIterator[CliContext]:
    """A session factory on the database and a node client signing with the control plane's
    key; both closed after."""
    if not settings.signing_key_file:
        raise NodeNotConfigured(
            "STELLAR_SIGNING_KEY_FILE is not set: source the control plane's env file first "
            "(`make run` prints the command)"
        )
    signer = CommandSigner.from_file(Path(settings.signing_key_file), issuer=settings.issuer)
    engine = create_engine(settings.database_url or "")
    try:
        async with node_session() as http:
            nodes = NodeClient(
                http,
                signer,
                timeout=settings.node_timeout_seconds,
                allow_plain_http=not settings.is_production,
            )
            yield CliContext(session_factory(engine), nodes)
    finally:
        await engine.dispose()
