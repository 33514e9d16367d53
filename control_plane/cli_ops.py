"""What the ``stellar-cp`` sub-commands do, as plain async functions (CLI, ``dev``, tests)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db import migrate as migrations
from control_plane.db.engine import create_engine, session_factory
from control_plane.db.models import AuditEntry, Node
from control_plane.db.session import transaction
from control_plane.errors import InvalidRequest
from control_plane.nodes.client import NodeClient, NodeNotConfigured
from control_plane.nodes.tls import normalize_fingerprint
from control_plane.nodes.transport import node_session
from control_plane.security.command_signing import CommandSigner
from control_plane.security.encryption import SecretBox
from control_plane.services import audit
from control_plane.services import blueprints as blueprint_service
from control_plane.services import nodes as node_service
from control_plane.services import users as user_service
from control_plane.services.eggs.exporting import ExportFormat, export_blueprint
from control_plane.services.eggs.importing import ImportedEgg, map_eggs, save_eggs
from control_plane.services.eggs.reading import (
    MAX_EGG_FILE_BYTES,
    EggFormat,
    format_of,
    read_eggs,
)
from control_plane.services.secrets import ReencryptReport, reencrypt_all
from control_plane.settings import ControlPlaneSettings
from shared.outbound import OutboundClient
from shared.ssrf import OutboundFetchFailed

DEFAULT_AGENT_DATA_DIR = Path("/var/lib/stellar-agent")


@asynccontextmanager
async def _engine(settings: ControlPlaneSettings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database_url or "")
    try:
        yield engine
    finally:
        await engine.dispose()


def _signer(settings: ControlPlaneSettings) -> CommandSigner:
    if not settings.signing_key_file:
        raise NodeNotConfigured(
            "STELLAR_SIGNING_KEY_FILE is not set: create a key with `stellar-cp keys generate`"
        )
    return CommandSigner.from_file(Path(settings.signing_key_file), issuer=settings.issuer)


async def migrate(settings: ControlPlaneSettings) -> str | None:
    async with _engine(settings) as engine:
        await migrations.upgrade(engine)
        return await migrations.current_revision(engine)


def render_agent_config(
    node: Node,
    signer: CommandSigner,
    *,
    data_dir: Path,
    more: Mapping[str, bool | int | str] | None = None,
) -> str:
    """The agent's TOML config for ``node``, trusting this control plane's key.

    ``more``: further top-level settings (JSON's spelling of these values is TOML's).
    """
    host_port = node.url.split("://", 1)[1]
    host, _, port = host_port.rpartition(":")
    if not host:
        host, port = host_port, ("443" if node.url.startswith("https") else "80")
    lines = [
        f"# stellar-agent config for node {node.name!r}, written by `stellar-cp node add`",
        f"node_id = {json.dumps(str(node.id))}",
        f"issuer = {json.dumps(signer.issuer)}",
        f"listen_host = {json.dumps(host.strip('[]'))}",
        f"listen_port = {int(port)}",
        f"data_dir = {json.dumps(str(data_dir))}",
        *(f"{name} = {json.dumps(value)}" for name, value in (more or {}).items()),
        "",
        "[trusted_keys]",
        f"{json.dumps(signer.kid)} = {json.dumps(signer.public_key)}",
        "",
    ]
    return "\n".join(lines)


async def add_node(
    settings: ControlPlaneSettings, *, name: str, url: str, data_dir: Path = DEFAULT_AGENT_DATA_DIR
) -> str:
    signer = _signer(settings)
    async with _engine(settings) as engine, transaction(session_factory(engine)) as session:
        node = await node_service.add_node(session, name=name, url=url)
        return render_agent_config(node, signer, data_dir=data_dir)


async def pin_node(settings: ControlPlaneSettings, *, name: str, fingerprint: str) -> str:
    """Store the SHA-256 fingerprint of a node's TLS certificate; calls then require it."""
    try:
        pinned = normalize_fingerprint(fingerprint)
    except ValueError as err:
        raise InvalidRequest(str(err)) from err
    async with _engine(settings) as engine, transaction(session_factory(engine)) as session:
        node = await node_service.get_node_by_name(session, name)
        node.tls_fingerprint = pinned
        await audit.append(
            session,
            None,
            audit.AuditEvent(
                "node.pinned", target_type="node", target_id=str(node.id), details={"by": "cli"}
            ),
        )
    return pinned


async def list_nodes(settings: ControlPlaneSettings) -> list[str]:
    async with _engine(settings) as engine, transaction(session_factory(engine)) as session:
        return [
            f"{n.name}\t{n.url}\t{n.status}\t{n.id}" for n in await node_service.list_nodes(session)
        ]


async def ping_node(settings: ControlPlaneSettings, name: str) -> str:
    signer = _signer(settings)
    async with _engine(settings) as engine:
        async with transaction(session_factory(engine)) as session:
            node = await node_service.get_node_by_name(session, name)
        async with node_session() as http:
            client = NodeClient(
                http,
                signer,
                timeout=settings.node_timeout_seconds,
                allow_plain_http=not settings.is_production,
            )
            info = await client.system_info(node, user="cli")
    return info.model_dump_json(indent=2)


async def create_user(
    settings: ControlPlaneSettings,
    *,
    email: str,
    password: str,
    is_admin: bool,
    only_if_no_admin: bool = False,
) -> str | None:
    """Create a user; with ``only_if_no_admin``, do nothing when an admin exists."""
    async with _engine(settings) as engine, transaction(session_factory(engine)) as session:
        if only_if_no_admin and await user_service.count_admins(session):
            return None
        user = await user_service.create_user(
            session,
            email=email,
            password=password,
            is_admin=is_admin,
            bcrypt_cost=settings.bcrypt_cost,
        )
        return user.email


async def verify_audit(settings: ControlPlaneSettings) -> tuple[int, list[str]]:
    """(rows checked, problems) for the audit trail's hash chain."""
    async with _engine(settings) as engine, transaction(session_factory(engine)) as session:
        problems = await audit.verify_chain(session)
        count = await session.scalar(select(func.count()).select_from(AuditEntry)) or 0
        return count, problems


async def reencrypt_secrets(settings: ControlPlaneSettings, *, batch: int = 500) -> ReencryptReport:
    """Re-encrypt every stored secret under the newest of STELLAR_ENCRYPTION_KEYS."""
    box = SecretBox.from_settings(settings)
    async with _engine(settings) as engine:
        return await reencrypt_all(engine, box, batch=batch)


async def read_egg_source(
    source: str, *, outbound: OutboundClient | None = None
) -> tuple[bytes, EggFormat]:
    """An egg file's bytes from a path, or from an http(s) URL fetched through the SSRF guard
    (public addresses only, every redirect checked, at most MAX_EGG_FILE_BYTES)."""
    if source.startswith(("http://", "https://")):
        if outbound is None:
            async with OutboundClient() as client:
                return await _fetch_egg(client, source)
        return await _fetch_egg(outbound, source)
    return await asyncio.to_thread(_read_egg_file, Path(source))


def _read_egg_file(path: Path) -> tuple[bytes, EggFormat]:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_EGG_FILE_BYTES + 1)
    except OSError as err:
        raise InvalidRequest(f"cannot read {path}: {err.strerror}") from err
    if len(raw) > MAX_EGG_FILE_BYTES:
        raise InvalidRequest(f"{path} is larger than {MAX_EGG_FILE_BYTES} bytes")
    return raw, format_of("", path.name)


async def _fetch_egg(client: OutboundClient, url: str) -> tuple[bytes, EggFormat]:
    async with client.fetch(url, max_bytes=MAX_EGG_FILE_BYTES, timeout_seconds=30) as response:
        if response.status != 200:
            raise OutboundFetchFailed(f"the URL answered {response.status}")
        raw = await response.read()
        media = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        return raw, format_of(media, response.url.path)


async def import_eggs(
    settings: ControlPlaneSettings,
    source: str,
    *,
    accept_unknown_rules: bool = False,
    accept_extension: bool = False,
    outbound: OutboundClient | None = None,
) -> list[ImportedEgg]:
    """Import the egg(s) of a file or URL; audited as ``blueprint.imported`` by the CLI."""
    raw, kind = await read_egg_source(source, outbound=outbound)
    mapped = map_eggs(
        read_eggs(raw, kind),
        accept_unknown_rules=accept_unknown_rules,
        accept_extension=accept_extension,
    )
    async with _engine(settings) as engine, transaction(session_factory(engine)) as session:
        imported = await save_eggs(session, mapped)
        for result in imported:
            await audit.append(
                session,
                None,
                audit.AuditEvent(
                    "blueprint.imported",
                    target_type="blueprint",
                    target_id=str(result.blueprint.id),
                    details={"by": "cli", "version": result.version, "created": result.created},
                ),
            )
        return imported


async def export_egg(settings: ControlPlaneSettings, blueprint_id: str, form: ExportFormat) -> str:
    """A blueprint as an egg, JSON text."""
    try:
        key = uuid.UUID(blueprint_id)
    except ValueError as err:
        raise InvalidRequest(f"{blueprint_id!r} is not a blueprint id") from err
    async with _engine(settings) as engine, transaction(session_factory(engine)) as session:
        blueprint = await blueprint_service.get_blueprint(session, key)
        return json.dumps(export_blueprint(blueprint, form), indent=2, ensure_ascii=False)
