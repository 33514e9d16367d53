"""A real SMTP server on loopback for the mail tests (aiosmtpd), and one that never answers.

``MailCatcher`` keeps each message a client delivered; ``next()`` awaits the next one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_LINK = re.compile(r"(https?://\S+?\?token=[A-Za-z0-9_-]+)")


@dataclass
class Delivered:
    """One message as the server received it."""

    envelope_to: list[str]
    message: EmailMessage

    @property
    def to(self) -> str:
        return str(self.message["To"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        return str(body.get_content())

    @property
    def text(self) -> str:
        return self.part("plain")

    @property
    def html(self) -> str:
        return self.part("html")

    def link(self) -> str:
        """The one tokened link in the plain-text part."""
        links = _LINK.findall(self.text)
        assert len(links) == 1, f"expected one link in {self.text!r}"
        return str(links[0])


@dataclass
class MailCatcher:
    received: list[Delivered] = field(default_factory=list)
    _queue: asyncio.Queue[Delivered] = field(default_factory=asyncio.Queue)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        delivered = Delivered([str(r) for r in envelope.rcpt_tos], message)
        self.received.append(delivered)
        self._queue.put_nowait(delivered)
        return "250 OK"

    async def next(self, timeout: float = 20.0) -> Delivered:
        """The next message delivered (waits for it)."""
        async with asyncio.timeout(timeout):
            return await self._queue.get()

    def pending(self) -> int:
        """Messages delivered but not yet taken with ``next``."""
        return self._queue.qsize()


@asynccontextmanager
async def smtp_server(
    catcher: MailCatcher,
    *,
    port: int = 0,
    tls_context: ssl.SSLContext | None = None,
    require_starttls: bool = False,
    implicit_tls: ssl.SSLContext | None = None,
) -> AsyncIterator[int]:
    """Serve SMTP on 127.0.0.1 (``port`` 0: any free one); yield the port. ``tls_context``
    offers STARTTLS; ``implicit_tls`` speaks TLS from the first byte (port 465 style)."""
    loop = asyncio.get_running_loop()

    def protocol() -> Any:
        return SMTP(
            catcher,
            hostname="mail.test",
            tls_context=tls_context,
            require_starttls=require_starttls,
            loop=loop,
        )

    server = await loop.create_server(
        protocol, "127.0.0.1", port, reuse_address=True, ssl=implicit_tls
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def silent_server(port: int = 0) -> AsyncIterator[int]:
    """Accept connections and never say a word (an SMTP server that hangs)."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", port, reuse_address=True)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


def self_signed(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 and the certificate file a client trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp.crt", directory / "smtp.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file
