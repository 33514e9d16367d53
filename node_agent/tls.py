"""The agent's own TLS identity: an ECDSA P-256 key and a self-signed certificate.

No CA is involved. The control plane pins the certificate itself: ``stellar-agent tls
generate`` prints the SHA-256 fingerprint of the certificate (DER), written as 32 upper-case
hex pairs joined by colons (95 characters, the form ``openssl x509 -fingerprint -sha256``
prints), and the operator stores it with the node. Any other certificate, however valid, is
refused by the control plane.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE_NAME: Final = "agent.crt"
KEY_FILE_NAME: Final = "agent.key"
# Pinned, so expiry protects nothing; rotation is "generate, update the pin, restart".
VALIDITY_DAYS: Final = 3650


class TlsSetupError(Exception):
    """The agent's certificate or key cannot be created or loaded; the message says why."""


@dataclass(frozen=True)
class AgentIdentity:
    """Where the agent's certificate and key are, and the fingerprint to pin."""

    cert_file: Path
    key_file: Path
    fingerprint: str


def fingerprint_of_der(der: bytes) -> str:
    """SHA-256 of a DER certificate as colon-separated upper-case hex (95 characters)."""
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())


def fingerprint_of_pem(pem: bytes) -> str:
    """The pinned form of a PEM certificate's fingerprint (see :func:`fingerprint_of_der`)."""
    certificate = x509.load_pem_x509_certificate(pem)
    return fingerprint_of_der(certificate.public_bytes(serialization.Encoding.DER))


def certificate_fingerprint(cert_file: Path) -> str:
    """The fingerprint of the certificate in ``cert_file``."""
    try:
        return fingerprint_of_pem(cert_file.read_bytes())
    except (OSError, ValueError) as err:
        raise TlsSetupError(f"cannot read the certificate {cert_file}: {err}") from err


def _subject_alternative_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def build_certificate(key: ec.EllipticCurvePrivateKey, host: str) -> x509.Certificate:
    """A self-signed server certificate for ``host`` (an IP address or a DNS name)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"stellar-agent {host}")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName([_subject_alternative_name(host)]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never follow or overwrite something planted at the path.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def generate_identity(host: str, out_dir: Path, *, replace: bool = False) -> AgentIdentity:
    """Write ``agent.key`` (0600) and ``agent.crt`` (0644) for ``host`` into ``out_dir``.

    An existing pair is kept (and its fingerprint returned) unless ``replace``: a new
    certificate means a new pin at the control plane.
    """
    cert_file, key_file = out_dir / CERT_FILE_NAME, out_dir / KEY_FILE_NAME
    if not replace and cert_file.exists() and key_file.exists():
        return AgentIdentity(cert_file, key_file, certificate_fingerprint(cert_file))
    try:
        out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = build_certificate(key, host)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        for path in (key_file, cert_file):
            path.unlink(missing_ok=True)
        _write_new(key_file, key_pem, 0o600)
        _write_new(cert_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError as err:
        raise TlsSetupError(
            f"cannot write the TLS key and certificate in {out_dir}: {err}"
        ) from err
    der = certificate.public_bytes(serialization.Encoding.DER)
    return AgentIdentity(cert_file, key_file, fingerprint_of_der(der))


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The agent's server-side TLS context (TLS 1.2 or newer, no client certificates)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as err:
        raise TlsSetupError(
            f"cannot load the TLS certificate {cert_file} with key {key_file}: {err}"
        ) from err
    return context
