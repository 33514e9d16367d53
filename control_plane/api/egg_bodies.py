"""The body of an egg import: the egg file as JSON, as YAML, or as a multipart upload."""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Final

from aiohttp import web

from control_plane.api.body_stream import BodyStream
from control_plane.errors import InvalidRequest
from control_plane.services.eggs.reading import MAX_EGG_FILE_BYTES, EggFormat, format_of

# Room for a multipart upload's boundaries and part headers around the file.
MAX_IMPORT_BODY_BYTES = MAX_EGG_FILE_BYTES + 64 * 1024
# The file, and a few form fields a browser or a tool may add beside it: a body of many
# small parts costs the parser time for each, whatever its size.
MAX_UPLOAD_PARTS: Final = 8
_TYPES: Final = (
    "application/json",
    "application/yaml",
    "text/yaml",
    "application/x-yaml",
    "application/octet-stream",
)


@dataclass(frozen=True, slots=True)
class EggBody:
    """A request's body as received; :meth:`file` finds the egg file in it (CPU work for an
    upload: call it off the event loop)."""

    raw: bytes
    content_type: str
    header: str

    def file(self) -> tuple[bytes, EggFormat]:
        """The egg file's bytes and how to read them (400 for an upload without a file)."""
        if self.content_type == "multipart/form-data":
            return _uploaded(self.header, self.raw)
        return self.raw, format_of(self.content_type)


async def egg_body(request: web.Request, *, wait_seconds: float) -> EggBody:
    """The request's body, whole (413 past the cap, 408 if it stops arriving, 400 for a type
    that holds no egg or an upload of more than :data:`MAX_UPLOAD_PARTS` parts)."""
    raw = await BodyStream(
        request,
        timeout=wait_seconds,
        max_bytes=MAX_IMPORT_BODY_BYTES,
        too_large=f"an egg file is at most {MAX_EGG_FILE_BYTES} bytes",
    ).read()
    if not raw:
        raise InvalidRequest("send the egg as the body (JSON or YAML) or as a file upload")
    header = request.headers.get("Content-Type", "")
    if request.content_type == "multipart/form-data":
        _count_parts(header, raw)
    elif request.content_type not in _TYPES:
        raise InvalidRequest(
            "send the egg as application/json, application/yaml or multipart/form-data"
        )
    return EggBody(raw, request.content_type, header)


def _count_parts(header: str, raw: bytes) -> None:
    """400 unless the upload has a boundary and at most :data:`MAX_UPLOAD_PARTS` parts
    (one pass over the bytes, in C: cheap enough for the event loop)."""
    message = EmailMessage()
    message["Content-Type"] = header
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise InvalidRequest("the multipart body has no boundary")
    # Each part starts with a delimiter line, and one more closes the body; a delimiter is
    # "--boundary" at the start of a line.
    delimiters = raw.count(b"\n--" + boundary.encode("latin-1", "replace"))
    delimiters += raw.startswith(b"--" + boundary.encode("latin-1", "replace"))
    if delimiters > MAX_UPLOAD_PARTS + 1:
        raise InvalidRequest(
            f"a multipart upload holds at most {MAX_UPLOAD_PARTS} parts: the egg file in a "
            "part named 'file', and a few fields"
        )


def _uploaded(content_type: str, raw: bytes) -> tuple[bytes, EggFormat]:
    """The first file part of a multipart/form-data body (its name or type says YAML)."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        raise InvalidRequest("the multipart body cannot be read")
    for part in message.iter_parts():
        if not isinstance(part, EmailMessage):
            continue
        filename = part.get_filename()
        if filename is None and part.get_param("name", header="content-disposition") != "file":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            break
        return payload, format_of(part.get_content_type(), filename or "")
    raise InvalidRequest("the upload holds no file (send it in a part named 'file')")
