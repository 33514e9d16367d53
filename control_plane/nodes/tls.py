"""Certificate pinning for calls to agents: each node's own certificate, nothing else.

An agent serves HTTPS with a self-signed certificate (``stellar-agent tls generate``); the
node row keeps its SHA-256 fingerprint (``nodes.tls_fingerprint``, colon hex, 95 characters).
:func:`node_ssl` turns that into the ``ssl=`` argument of an aiohttp request, so the
connection is refused before a single byte of the request (and its command token) is sent
to anything that does not hold that certificate's key. Errors::

    UpstreamUnavailable (503)
    ├── NodeNotPinned          https node without a stored fingerprint: refused, not trusted
    └── UpstreamFailed (502)
        └── CertificateMismatch   the node presented another certificate
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

import aiohttp
from yarl import URL

from shared.errors import UpstreamFailed, UpstreamUnavailable

FINGERPRINT_LENGTH: Final = 95
_HEX_PAIRS: Final = re.compile(r"^[0-9A-F]{64}$")


class NodeNotPinned(UpstreamUnavailable):
    """An https node has no pinned fingerprint, so no certificate it shows can be trusted."""

    def __init__(self, node_name: str) -> None:
        super().__init__(
            f"node {node_name!r} has no pinned TLS fingerprint: store the one "
            "`stellar-agent tls generate` printed on the node before commanding it"
        )
        self.node_name = node_name


class CertificateMismatch(UpstreamFailed):
    """The node answered with a certificate whose fingerprint is not the pinned one."""

    code = "node_certificate_mismatch"

    def __init__(self, node_name: str, *, expected: str = "", got: str = "") -> None:
        super().__init__(
            f"node {node_name!r} presented a certificate that does not match its pinned "
            "fingerprint (an impostor, or the agent's certificate was replaced: if so, "
            "update the node's fingerprint)"
        )
        self.node_name = node_name
        self.expected = expected
        self.got = got


class InsecureNodeUrl(UpstreamUnavailable):
    """Plain http to an agent that is not on this machine."""


def normalize_fingerprint(text: str) -> str:
    """``AB:CD:…`` (95 characters) from a SHA-256 fingerprint in colon or plain hex, any case.

    Raises ValueError for anything else (a SHA-1 fingerprint, base64, a typo).
    """
    hex_digits = text.strip().replace(":", "").upper()
    if not _HEX_PAIRS.match(hex_digits):
        raise ValueError(
            "a TLS fingerprint is the certificate's SHA-256 as 32 hex pairs, "
            "e.g. 'AB:CD:…' as `stellar-agent tls generate` prints it"
        )
    return ":".join(hex_digits[i : i + 2] for i in range(0, 64, 2))


def format_digest(digest: bytes) -> str:
    """A raw SHA-256 digest in the pinned form."""
    return ":".join(f"{byte:02X}" for byte in digest)


def pinned_fingerprint(fingerprint: str) -> aiohttp.Fingerprint:
    """aiohttp's pin for a stored fingerprint (it checks the peer certificate's SHA-256)."""
    return aiohttp.Fingerprint(bytes.fromhex(normalize_fingerprint(fingerprint).replace(":", "")))


def _is_loopback_host(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def node_ssl(
    node_name: str, url: str, fingerprint: str | None, *, allow_plain_http: bool = True
) -> aiohttp.Fingerprint | bool:
    """The ``ssl=`` argument for a request to this node.

    https: the node's pin (``NodeNotPinned`` without one). http: ``True`` (aiohttp's default,
    unused without TLS), refused with ``InsecureNodeUrl`` unless ``allow_plain_http`` or the
    agent is on loopback; production control planes pass ``allow_plain_http=False``.
    """
    parsed = URL(url)
    if parsed.scheme == "https":
        if not fingerprint:
            raise NodeNotPinned(node_name)
        return pinned_fingerprint(fingerprint)
    if not allow_plain_http and not _is_loopback_host(parsed.host):
        raise InsecureNodeUrl(
            f"node {node_name!r} is reached over plain http at {parsed.host}: agents off this "
            "machine must serve https with a pinned certificate"
        )
    return True


def mismatch_error(node_name: str, err: aiohttp.ServerFingerprintMismatch) -> CertificateMismatch:
    """The domain error for aiohttp's fingerprint failure (``raise … from err``)."""
    return CertificateMismatch(
        node_name, expected=format_digest(err.expected), got=format_digest(err.got)
    )
