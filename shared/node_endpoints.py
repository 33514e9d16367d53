"""The node agent's API as one table: what both sides agree on, for every endpoint.

Each row (:class:`NodeEndpoint`) names a method and path template, the command token's
``act`` and the kind of ``sub`` it binds (``node`` or ``server:<uuid>``), the request and
answer models, the success status, the query's model and how bodies travel. The agent
registers its routes from these rows (``node_agent/api/``: the verifier's expected ``act``
and ``sub`` come from the row), the control plane's ``control_plane/nodes/client.py`` has one
typed method per row, and ``stellar-agent api-doc`` prints the OpenAPI description made
from the table (:func:`openapi_document`). Nothing else spells a node path or an action.

How bodies travel (``body``): ``none``; ``json`` (the request model, its exact bytes
signed); ``raw`` (bytes, signed); ``stream`` (bytes the agent reads itself, bounded by a
size in the signed query; the token signs the empty body). Answers (``answer``): ``none``
(204), ``json`` (the response model), ``bytes`` (a streamed file), ``websocket``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from shared.backups_api import BackupCreate, BackupList, BackupRecord, BackupRestore
from shared.files_api import (
    ChangeMode,
    CompressFiles,
    CopyFile,
    DecompressArchive,
    DeletePaths,
    ExtractionSummary,
    FileEntry,
    FileListing,
    MakeDirectory,
    PathText,
    PullFile,
    RenameFile,
)
from shared.node_api import DiskResize, ServerDisk, SystemInfo
from shared.server_spec import (
    MAX_LOG_LINES,
    ConsoleCommand,
    ConsoleLines,
    PowerAction,
    ServerSpec,
    ServerStats,
    ServerStatus,
)
from shared.sftp_api import MAX_ACCESS_TABLE_BYTES, SftpAccess

Subject = Literal["node", "server"]
BodyKind = Literal["none", "json", "raw", "stream"]
AnswerKind = Literal["none", "json", "bytes", "websocket"]
In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)
_PARAMETER: Final = re.compile(r"\{(\w+)\}")


class NoBody(BaseModel):
    """An endpoint without a JSON body, or without a JSON answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FilePath(BaseModel):
    """``?path=``: a path in the server's volume."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: PathText = "/"


class FileSave(BaseModel):
    """``?path=&create=``: the file a save replaces, and whether it may make a new one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: PathText = "/"
    create: bool = Field(
        True,
        description="make the file if there is none (needs files.create); false: 404 if none",
    )


class FileUpload(BaseModel):
    """``?path=&size=&overwrite=``: where an upload goes, exactly how many bytes it has, and
    whether it may replace a file of that name (409 otherwise)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: PathText
    size: int = Field(ge=0, le=1 << 44)
    overwrite: bool = Field(
        True,
        description="replace a file of that name (needs files.write); false: 409 if one exists",
    )


class LogLines(BaseModel):
    """``?lines=``: how many of the most recent console lines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lines: int = Field(default=100, ge=1, le=MAX_LOG_LINES)


class EventsAfter(BaseModel):
    """``?after=<epoch>:<seq>``: the stream first replays the numbered events it still keeps
    that came after ``seq`` in the agent's stream ``epoch`` (``shared.node_api.StreamStart``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}:[0-9]{1,18}$")


@dataclass(frozen=True)
class NodeEndpoint(Generic[In, Out]):
    """One endpoint of the agent's API."""

    method: str
    path: str
    action: str
    subject: Subject
    request: type[In]
    response: type[Out]
    summary: str
    status: int = 200
    query: type[BaseModel] | None = None
    body: BodyKind = "json"
    answer: AnswerKind = "json"
    # The largest body the agent reads for this row (json or raw); None: the agent's
    # ``max_body_bytes``.
    max_body: int | None = None

    def __post_init__(self) -> None:
        if (self.body == "json") != (self.request is not NoBody):
            raise ValueError(f"{self.action}: a JSON body needs a model, and only it")
        if (self.answer == "json") != (self.response is not NoBody):
            raise ValueError(f"{self.action}: a JSON answer needs a model, and only it")
        if self.subject == "server" and not self.path.startswith(SERVER):
            raise ValueError(f"{self.action}: a server's endpoint lies under {SERVER}")

    @property
    def parameters(self) -> list[str]:
        return _PARAMETER.findall(self.path)

    def url_path(self, **ids: uuid.UUID) -> str:
        """The path with its ids filled in (each one is required, nothing else is taken)."""
        if sorted(ids) != sorted(self.parameters):
            raise ValueError(f"{self.action} takes {self.parameters}, not {sorted(ids)}")
        return _PARAMETER.sub(lambda match: str(ids[match[1]]), self.path)

    def subject_of(self, server_id: uuid.UUID | None) -> str:
        """The ``sub`` a token for this endpoint carries."""
        if self.subject == "node":
            return "node"
        if server_id is None:
            raise ValueError(f"{self.action} acts on a server")
        return f"server:{server_id}"


SERVER: Final = "/api/v1/servers/{server_id}"
FILES: Final = SERVER + "/files"
BACKUPS: Final = SERVER + "/backups"
BACKUP: Final = BACKUPS + "/{backup_id}"

# --- the node ---------------------------------------------------------------------------

NODE_SYSTEM = NodeEndpoint(
    "GET", "/api/v1/system", "node.system", "node", NoBody, SystemInfo,
    "The node's facts (CPU, memory, disk, Docker), as last refreshed", body="none",
)  # fmt: skip
NODE_METRICS = NodeEndpoint(
    "GET", "/api/v1/metrics", "node.metrics", "node", NoBody, NoBody,
    "The agent's Prometheus metrics (text format; docs/metrics.md)", body="none",
    answer="bytes",
)  # fmt: skip
NODE_EVENT_STREAM = NodeEndpoint(
    "GET", "/api/v1/events", "node.events", "node", NoBody, NoBody,
    "The node's event stream (shared.node_api.NodeEvent frames)", query=EventsAfter,
    body="none", answer="websocket",
)  # fmt: skip

NODE_SFTP_ACCESS = NodeEndpoint(
    "PUT", "/api/v1/sftp/access", "sftp.access", "node", SftpAccess, NoBody,
    "Replace the node's SFTP access table (docs/sftp.md); sessions it no longer allows close",
    status=204, answer="none", max_body=MAX_ACCESS_TABLE_BYTES,
)  # fmt: skip

# --- servers ----------------------------------------------------------------------------

SERVER_CREATE = NodeEndpoint(
    "PUT", SERVER, "server.create", "server", ServerSpec, ServerStatus,
    "Create the server's volume and container (and run its installer)", status=201,
)  # fmt: skip
SERVER_READ = NodeEndpoint(
    "GET", SERVER, "server.read", "server", NoBody, ServerStatus,
    "The server's install phase and container state", body="none",
)  # fmt: skip
SERVER_DELETE = NodeEndpoint(
    "DELETE", SERVER, "server.delete", "server", NoBody, NoBody,
    "Remove the server's containers, volume and record", status=204, body="none", answer="none",
)  # fmt: skip
SERVER_POWER = NodeEndpoint(
    "POST", SERVER + "/power", "server.power", "server", PowerAction, ServerStatus,
    "Start or kill (200, done) or stop or restart (202, finishing in the background)",
)  # fmt: skip
SERVER_UPDATE = NodeEndpoint(
    "PUT", SERVER + "/spec", "server.update", "server", ServerSpec, ServerStatus,
    "Replace the spec: a stopped game's container now, a running one's at its next start",
)  # fmt: skip
SERVER_REINSTALL = NodeEndpoint(
    "POST", SERVER + "/reinstall", "server.reinstall", "server", NoBody, ServerStatus,
    "Run the install step again on the stopped server", status=202, body="none",
)  # fmt: skip
SERVER_COMMAND = NodeEndpoint(
    "POST", SERVER + "/command", "server.command", "server", ConsoleCommand, NoBody,
    "Type one line on the game's console", status=204, answer="none",
)  # fmt: skip
SERVER_LOGS = NodeEndpoint(
    "GET", SERVER + "/logs", "server.logs", "server", NoBody, ConsoleLines,
    "The most recent console lines", query=LogLines, body="none",
)  # fmt: skip
SERVER_STATS = NodeEndpoint(
    "GET", SERVER + "/stats", "server.stats", "server", NoBody, ServerStats,
    "CPU, memory, network, PIDs and uptime of the game now", body="none",
)  # fmt: skip
SERVER_CONSOLE = NodeEndpoint(
    "GET", SERVER + "/console", "server.console", "server", NoBody, NoBody,
    "The console WebSocket (shared.node_api.ConsoleInbound / ConsoleOutbound frames)",
    body="none", answer="websocket",
)  # fmt: skip
SERVER_DISK = NodeEndpoint(
    "GET", SERVER + "/disk", "server.disk.read", "server", NoBody, ServerDisk,
    "Bytes used and the limit, as the kernel accounts them", body="none",
)  # fmt: skip
SERVER_DISK_RESIZE = NodeEndpoint(
    "PATCH", SERVER + "/disk", "server.disk", "server", DiskResize, ServerDisk,
    "A new disk limit; a running game sees it at once",
)  # fmt: skip

# --- files ------------------------------------------------------------------------------

FILES_LIST = NodeEndpoint(
    "GET", FILES + "/list", "files.list", "server", NoBody, FileListing,
    "A directory's entries", query=FilePath, body="none",
)  # fmt: skip
FILES_READ = NodeEndpoint(
    "GET", FILES + "/contents", "files.read", "server", NoBody, NoBody,
    "A file's bytes, streamed", query=FilePath, body="none", answer="bytes",
)  # fmt: skip
FILES_WRITE = NodeEndpoint(
    "PUT", FILES + "/contents", "files.write", "server", NoBody, FileEntry,
    "Replace or create a file with the (signed) body, atomically", query=FileSave, body="raw",
)  # fmt: skip
FILES_UPLOAD = NodeEndpoint(
    "PUT", FILES + "/upload", "files.upload", "server", NoBody, FileEntry,
    "A streamed upload of exactly size bytes (the token signs the empty body)",
    query=FileUpload, body="stream",
)  # fmt: skip
FILES_MKDIR = NodeEndpoint(
    "POST", FILES + "/directory", "files.mkdir", "server", MakeDirectory, FileEntry,
    "Create a directory", status=201,
)  # fmt: skip
FILES_RENAME = NodeEndpoint(
    "POST", FILES + "/rename", "files.rename", "server", RenameFile, FileEntry,
    "Rename or move",
)  # fmt: skip
FILES_COPY = NodeEndpoint(
    "POST", FILES + "/copy", "files.copy", "server", CopyFile, FileEntry,
    "Copy a file", status=201,
)  # fmt: skip
FILES_DELETE = NodeEndpoint(
    "POST", FILES + "/delete", "files.delete", "server", DeletePaths, NoBody,
    "Delete files and directories", status=204, answer="none",
)  # fmt: skip
FILES_CHMOD = NodeEndpoint(
    "POST", FILES + "/chmod", "files.chmod", "server", ChangeMode, FileEntry,
    "Change a file's mode",
)  # fmt: skip
FILES_COMPRESS = NodeEndpoint(
    "POST", FILES + "/compress", "files.compress", "server", CompressFiles, FileEntry,
    "Pack files into tar.gz or zip", status=201,
)  # fmt: skip
FILES_DECOMPRESS = NodeEndpoint(
    "POST", FILES + "/decompress", "files.decompress", "server", DecompressArchive,
    ExtractionSummary, "Unpack an archive, entry by entry, confined",
)  # fmt: skip
FILES_PULL = NodeEndpoint(
    "POST", FILES + "/pull", "files.pull", "server", PullFile, FileEntry,
    "Download a public URL into the server (through the SSRF guard)", status=201,
)  # fmt: skip

# --- backups ----------------------------------------------------------------------------

BACKUP_CREATE = NodeEndpoint(
    "POST", BACKUPS, "backups.create", "server", BackupCreate, BackupRecord,
    "Start a backup in the background", status=202,
)  # fmt: skip
BACKUP_LIST = NodeEndpoint(
    "GET", BACKUPS, "backups.list", "server", NoBody, BackupList,
    "Every backup record of the server, oldest first", body="none",
)  # fmt: skip
BACKUP_READ = NodeEndpoint(
    "GET", BACKUP, "backups.read", "server", NoBody, BackupRecord,
    "One backup's record", body="none",
)  # fmt: skip
BACKUP_DOWNLOAD = NodeEndpoint(
    "GET", BACKUP + "/download", "backups.download", "server", NoBody, NoBody,
    "The encrypted backup file (shared/backup_format.py), streamed", body="none",
    answer="bytes",
)  # fmt: skip
BACKUP_DELETE = NodeEndpoint(
    "DELETE", BACKUP, "backups.delete", "server", NoBody, NoBody,
    "Delete the backup's file and record", status=204, body="none", answer="none",
)  # fmt: skip
BACKUP_RESTORE = NodeEndpoint(
    "POST", BACKUP + "/restore", "backups.restore", "server", BackupRestore, BackupRecord,
    "Replace the stopped server's files with the backup's, in the background", status=202,
)  # fmt: skip

NODE_API: Final[tuple[NodeEndpoint[Any, Any], ...]] = (
    NODE_SYSTEM,
    NODE_METRICS,
    NODE_EVENT_STREAM,
    NODE_SFTP_ACCESS,
    SERVER_CREATE,
    SERVER_READ,
    SERVER_DELETE,
    SERVER_POWER,
    SERVER_UPDATE,
    SERVER_REINSTALL,
    SERVER_COMMAND,
    SERVER_LOGS,
    SERVER_STATS,
    SERVER_CONSOLE,
    SERVER_DISK,
    SERVER_DISK_RESIZE,
    FILES_LIST,
    FILES_READ,
    FILES_WRITE,
    FILES_UPLOAD,
    FILES_MKDIR,
    FILES_RENAME,
    FILES_COPY,
    FILES_DELETE,
    FILES_CHMOD,
    FILES_COMPRESS,
    FILES_DECOMPRESS,
    FILES_PULL,
    BACKUP_CREATE,
    BACKUP_LIST,
    BACKUP_READ,
    BACKUP_DOWNLOAD,
    BACKUP_DELETE,
    BACKUP_RESTORE,
)

_REF = "#/components/schemas/{model}"


def openapi_document(endpoints: tuple[NodeEndpoint[Any, Any], ...] = NODE_API) -> dict[str, Any]:
    """The node API as an OpenAPI 3.1 document, made from the table and its models."""
    models = sorted(
        {m for e in endpoints for m in (e.request, e.response, e.query) if m not in (None, NoBody)},
        key=lambda m: m.__name__,
    )
    keys, definitions = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    refs = {m: keys[(m, "validation")]["$ref"] for m in models}
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        operation: dict[str, Any] = {
            "operationId": endpoint.action,
            "summary": endpoint.summary,
            "x-command-act": endpoint.action,
            "x-command-sub": "node" if endpoint.subject == "node" else "server:<server_id>",
            "security": [{"commandToken": []}],
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in endpoint.parameters
            ],
            "responses": {str(endpoint.status): _answer(endpoint, refs)},
        }
        if endpoint.query is not None:
            schema = endpoint.query.model_json_schema(ref_template=_REF)
            required = set(schema.get("required", []))
            operation["parameters"] += [
                {"name": name, "in": "query", "required": name in required, "schema": prop}
                for name, prop in schema.get("properties", {}).items()
            ]
        if endpoint.body == "json":
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": refs[endpoint.request]}}},
            }
        elif endpoint.body in ("raw", "stream"):
            binary = {"schema": {"type": "string", "format": "binary"}}
            operation["requestBody"] = {
                "required": True,
                "content": {"application/octet-stream": binary},
                "description": "streamed; the token signs the empty body"
                if endpoint.body == "stream"
                else "the token signs these bytes",
            }
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "StellarStack node agent", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "commandToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT (EdDSA, typ stellar-cmd+jwt), one request, once",
                }
            },
        },
    }


def _answer(endpoint: NodeEndpoint[Any, Any], refs: dict[type[BaseModel], str]) -> dict[str, Any]:
    if endpoint.answer == "json":
        schema = {"$ref": refs[endpoint.response]}
        return {"description": "success", "content": {"application/json": {"schema": schema}}}
    if endpoint.answer == "bytes":
        binary = {"schema": {"type": "string", "format": "binary"}}
        return {"description": "the bytes", "content": {"application/octet-stream": binary}}
    if endpoint.answer == "websocket":
        return {"description": "switching protocols: a WebSocket"}
    return {"description": "done"}
