"""The body of an egg import: the egg file as JSON, as YAML, or as a multipart upload."""

from __future__ import annotations

import email.parser
import email.policy
from email.message import EmailMessage

from aiohttp import web

from control_plane.api.body_stream import BodyStream
from control_plane.errors import InvalidRequest
from control_plane.services.eggs.reading import MAX_EGG_FILE_BYTES, EggFormat, format_of

# Room for a multipart upload's boundaries and part headers around the file.
MAX_IMPORT_BODY_BYTES = MAX_EGG_FILE_BYTES + 64 * 1024


async def egg_file(request: web.Request, *, wait_seconds: float) -> tuple[bytes, EggFormat]:
    """The egg file's bytes and how to read them, from the request's body (413 past the cap,
    408 if it stops arriving)."""
    raw = await BodyStream(
        request,
        timeout=wait_seconds,
        max_bytes=MAX_IMPORT_BODY_BYTES,
        too_large=f"an egg file is at most {MAX_EGG_FILE_BYTES} bytes",
    ).read()
    if not raw:
        raise InvalidRequest("send the egg as the body (JSON or YAML) or as a file upload")
    if request.content_type == "multipart/form-data":
        return _uploaded(request.headers.get("Content-Type", ""), raw)
    if request.content_type not in (
        "application/json",
        "application/yaml",
        "text/yaml",
        "application/x-yaml",
        "application/octet-stream",
    ):
        raise InvalidRequest(
            "send the egg as application/json, application/yaml or multipart/form-data"
        )
    return raw, format_of(request.content_type)


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
