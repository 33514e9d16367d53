"""One delivery over SMTP with aiosmtplib: STARTTLS (required, not opportunistic), implicit
TLS, or plain (development, or a relay on localhost)."""

from __future__ import annotations

import email.utils
import ssl
from email.message import EmailMessage

import aiosmtplib

from control_plane.settings import ControlPlaneSettings


class PermanentFailure(Exception):
    """The server refused the mail for good (5xx for the recipient): retrying will not help."""


def build_message(
    settings: ControlPlaneSettings, *, to: str, subject: str, text: str, html: str
) -> EmailMessage:
    """A multipart/alternative mail: the plain-text part first, the HTML part preferred."""
    sender = settings.mail_from or ""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=False)
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or None
    message["Message-ID"] = email.utils.make_msgid(domain=domain)
    # Vacation responders must not answer these.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def _tls_context(settings: ControlPlaneSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.smtp_ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def deliver(settings: ControlPlaneSettings, message: EmailMessage) -> None:
    """Send ``message``; raise :class:`PermanentFailure` or another error (to retry)."""
    security = settings.smtp_security
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port_number,
            username=settings.smtp_username,
            password=settings.smtp_password,
            use_tls=security == "tls",
            # True, not None: a server that does not offer STARTTLS is an error, never a
            # silent downgrade to clear text.
            start_tls=security == "starttls",
            tls_context=_tls_context(settings) if security != "none" else None,
            timeout=settings.smtp_timeout_seconds,
        )
    except aiosmtplib.SMTPRecipientsRefused as err:
        codes = [refused.code for refused in err.recipients]
        if codes and all(500 <= code < 600 for code in codes):
            raise PermanentFailure(str(err)) from err
        raise
